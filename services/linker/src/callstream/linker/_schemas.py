"""What the linker answers, as msgspec Structs, so that ``/schema`` states the exact types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from callstream.contracts import Source

from ._links import Kind, Link, LinkOrigin, MomentLink, MomentReason, Reason

MessageId = Annotated[str, msgspec.Meta(max_length=64)]
MAX_RESOLVE_IDS = 1000
# What 1,000 ids of the longest accepted form need, with room for spacing: 1,000 x (64 + 4) bytes
# is 68 kB. A larger body is a 413 before it is decoded (litestar's default would read 10 MB).
MAX_RESOLVE_BODY = 128 * 1024


class ErrorBody(msgspec.Struct, kw_only=True):
    error: str
    detail: Any


class LinkRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    message_id: str
    source: Source
    external_id: str
    url: str | None
    kind: Kind
    origin: LinkOrigin | None
    reason: Reason | None


class ResolveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message_ids: Annotated[list[MessageId], msgspec.Meta(max_length=MAX_RESOLVE_IDS)]


class ResolveResponse(msgspec.Struct, kw_only=True):
    """One entry per requested id: the link, or null when the message is unknown or not visible."""

    links: dict[str, LinkRecord | None]


class MessageMoment(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str
    source: Source
    external_id: str
    url: str | None
    kind: Kind
    origin: LinkOrigin | None
    reason: MomentReason | None
    moment: bool
    t: int


class Author(msgspec.Struct, kw_only=True):
    name: str | None
    email: str | None
    id: str | None


class CustomerOut(msgspec.Struct, kw_only=True):
    id: str
    name: str | None
    domain: str
    external_system: str | None


class MessageOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One message. Every field but ``id`` may be left out with ``?fields=``."""

    id: str
    workspace_id: str | msgspec.UnsetType = msgspec.UNSET
    source: Source | msgspec.UnsetType = msgspec.UNSET
    external_id: str | msgspec.UnsetType = msgspec.UNSET
    title: str | msgspec.UnsetType | None = msgspec.UNSET
    sent_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
    updated_at: datetime | msgspec.UnsetType = msgspec.UNSET
    author: Author | msgspec.UnsetType = msgspec.UNSET
    channel_name: str | msgspec.UnsetType | None = msgspec.UNSET
    content: str | msgspec.UnsetType = msgspec.UNSET
    customer: CustomerOut | msgspec.UnsetType | None = msgspec.UNSET
    message_metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    link: Link | msgspec.UnsetType = msgspec.UNSET


MESSAGE_FIELDS = frozenset(f for f in MessageOut.__struct_fields__ if f != "id")


class MessageSummary(msgspec.Struct, kw_only=True):
    """One message of a list. ``customer_name``: the customer's name, else the domain it was
    recognised by (null without a customer); ``integration_id``: the integration that brought it;
    ``duration_seconds``: the call's length in whole seconds, null when the provider did not say
    (Fathom: from the recording's start and end)."""

    id: str
    workspace_id: str
    source: Source
    external_id: str
    title: str | None
    sent_at: datetime | None
    channel_name: str | None
    author: Author
    customer_id: str | None
    link: Link
    customer_name: str | None
    integration_id: str | None
    duration_seconds: int | None


class MessagePage(msgspec.Struct, kw_only=True):
    """``next_cursor`` is null on the last page; pass it back as ``cursor`` for the next one."""

    items: list[MessageSummary]
    next_cursor: str | None


class FeatureMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The old ``MessageResponse`` fields plus source, external_id, metadata and link; ``content``
    (the transcript) only with ``?include=content``, the raw keys of the metadata only with
    ``?include=raw``."""

    id: str
    content: str | msgspec.UnsetType = msgspec.UNSET
    sent_at: datetime | None
    sender_name: str | None
    channel_name: str | None
    customer_name: str | None
    customer_email: str | None
    ai_insights: dict[str, Any] | None
    source: Source
    external_id: str
    message_metadata: dict[str, Any]
    link: Link


def link_record(message_id: str, source: Source, external_id: str, link: Link) -> LinkRecord:
    return LinkRecord(
        message_id=message_id,
        source=source,
        external_id=external_id,
        url=link.url,
        kind=link.kind,
        origin=link.origin,
        reason=link.reason,
    )


def message_moment(message_id: str, source: Source, external_id: str, link: MomentLink, t: int) -> MessageMoment:
    return MessageMoment(
        message_id=message_id,
        source=source,
        external_id=external_id,
        url=link.url,
        kind=link.kind,
        origin=link.origin,
        reason=link.reason,
        moment=link.moment,
        t=t,
    )
