"""What a provider object maps to, independent of the provider: one message, its participants and
its customer. Pure data; the mapping modules build it and the store writes it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, HostAllowList, LinkReason, LinkSources, Source, vet_url


class UnmappableError(ValueError):
    """A payload that can never become a message, however often it is retried (it goes to the DLQ)."""


@dataclass(frozen=True, slots=True)
class MappedParticipant:
    name: str | None
    email: str | None
    affiliation: str  # 'internal', 'external' or 'unknown'
    speaker_id: str | None
    role: str
    title: str | None = None  # job title when the provider sends one (Gong parties)


@dataclass(frozen=True, slots=True)
class MappedCustomer:
    domain: str
    name: str | None
    industry: str | None = None
    website: str | None = None
    external_system: str | None = None  # 'hubspot' when a CRM names it, else a guess from the domain
    external_id: str | None = None
    attributes_json: bytes = b"{}"


@dataclass(frozen=True, slots=True)
class MappedMessage:
    workspace_id: str
    source: Source
    external_id: str
    integration_id: str
    title: str | None
    content: str
    channel_name: str
    channel_id: str | None
    author_name: str | None
    author_id: str | None
    author_email: str | None
    sent_at: datetime | None
    metadata_json: bytes
    ai_insights_json: bytes | None
    link_url: str | None  # as the provider sent it until finish() vets it (then safe to hand out, or None)
    provider_host: str | None
    observed_at: datetime  # when this state of the provider object was seen (RawCall.received_at)
    participants: tuple[MappedParticipant, ...] = ()
    customer: MappedCustomer | None = None
    content_hash: str = field(default="")
    # The provider marks the call private: what was said is withheld, and this version may replace a
    # stored transcript (the one case where a version without a transcript is not a downgrade).
    withheld: bool = False
    link_sources: LinkSources | None = None  # filled by finish() from metadata_json
    link_reason: LinkReason | None = None  # why finish() refused link_url
    # The W3C trace context of the raw call (not content: outside the hash), kept with its outbox
    # row so the MessageUpserted continues the call's trace.
    traceparent: str | None = None
    tracestate: str | None = None
    # The pull run that fetched it (not content either): what was stored is reported per run.
    run_id: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.workspace_id, self.source, self.external_id)

    @property
    def has_transcript(self) -> bool:
        return bool(self.content)


_ENCODER = msgspec.json.Encoder()
# An escaped NUL not preceded by an odd run of backslashes (which would make it literal text).
_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def encode_json(value: Any) -> bytes:
    """JSON for a jsonb column. jsonb rejects ``\\u0000``, which providers' raw bytes may carry,
    so escaped NULs are dropped (the rest stays byte for byte)."""
    blob = _ENCODER.encode(value)
    if b"\\u0000" in blob:
        blob = _ESCAPED_NUL.sub(rb"\1", blob)
    return blob


def content_hash(parts: tuple[Any, ...], *blobs: bytes) -> str:
    """Hash of everything the message stores: equal hash, nothing to write and nothing to emit."""
    h = hashlib.blake2b(digest_size=20)
    h.update(_ENCODER.encode(parts))
    for blob in blobs:
        h.update(b"\x00")
        h.update(blob)
    return h.hexdigest()


_TEXT_FIELDS: dict[type, tuple[str, ...]] = {}


def _nul_changes(item: Any) -> dict[str, str]:
    """The text fields of a dataclass that hold NUL characters, without them (PostgreSQL text
    cannot hold them, and any provider string may carry one). Field names are looked up once per
    class: this runs for every message and participant."""
    names = _TEXT_FIELDS.get(type(item))
    if names is None:
        names = _TEXT_FIELDS[type(item)] = tuple(f.name for f in fields(item))
    return {
        name: value.replace("\x00", "")
        for name in names
        if isinstance(value := getattr(item, name), str) and "\x00" in value
    }


def _without_nul(item: Any) -> Any:
    changes = _nul_changes(item)
    return replace(item, **changes) if changes else item


def finish(message: MappedMessage, links: HostAllowList = DEFAULT_LINK_ALLOW_LIST) -> MappedMessage:
    """Clean the text fields, vet the link fields (:func:`vet_links`) and fill in the content hash
    (over every stored field, not the observation time). Runs once per raw call, so the message is
    copied once more only when a NUL had to go."""
    changes: dict[str, Any] = _nul_changes(message)
    if message.customer is not None and (customer := _without_nul(message.customer)) is not message.customer:
        changes["customer"] = customer
    participants = tuple(_without_nul(p) for p in message.participants)
    if any(new is not old for new, old in zip(participants, message.participants, strict=True)):
        changes["participants"] = participants
    if changes:
        message = replace(message, **changes)
    customer = message.customer
    parts = (
        message.title,
        message.channel_name,
        message.channel_id,
        message.author_name,
        message.author_id,
        message.author_email,
        message.sent_at.isoformat() if message.sent_at else None,
        message.integration_id,
        [(p.name, p.email, p.affiliation, p.speaker_id, p.role, p.title) for p in message.participants],
        None
        if customer is None
        else (
            customer.domain,
            customer.name,
            customer.industry,
            customer.website,
            customer.external_system,
            customer.external_id,
        ),
    )
    digest = content_hash(
        parts,
        message.content.encode(),
        message.metadata_json,
        message.ai_insights_json or b"",
        customer.attributes_json if customer else b"",
    )
    link_url, link_reason, sources = vet_links(message.link_url, link_sources(message.metadata_json), links)
    return replace(message, content_hash=digest, link_url=link_url, link_reason=link_reason, link_sources=sources)


def vet_links(
    link_url: str | None, sources: LinkSources | None, links: HostAllowList
) -> tuple[str | None, LinkReason | None, LinkSources | None]:
    """The link fields of a ``MessageUpserted``, by the linker's rule (``vet_url``, one
    implementation in contracts): whatever a provider sends, the event stays small and never
    carries a URL the linker would refuse to serve.

    ``link_url`` is the vetted form or ``None`` with the reason. ``link_sources`` is kept only when
    every URL in it passes: it lets a consumer resolve the link without the row, so it must resolve
    exactly as the row would, and a refused value in it decides the link (the linker never falls
    back to a later candidate); without it consumers read the row (which keeps what was sent)."""
    url, reason = vet_url(link_url, links) if link_url else (None, None)
    if reason is not None:  # the metadata's link keys were nulled: resolving them would skip the refusal
        sources = None
    if sources is not None and any(
        value and vet_url(value, links)[0] is None for value in (sources.recording_url, sources.share_url, sources.url)
    ):
        sources = None
    if sources is not None and sources.call_id is not None and len(sources.call_id) > _MAX_CALL_ID:
        sources = None
    return url, reason, sources


# A provider's call id in link_sources is the id part of a link (Gong: 19 digits); anything longer
# is not one, and only makes the event large.
_MAX_CALL_ID = 64
# A MessageUpserted names its message's title for consumers' convenience; the row keeps all of it.
MAX_EVENT_TITLE = 1000


def event_title(title: str | None) -> str | None:
    """The title as a ``MessageUpserted`` carries it: at most ``MAX_EVENT_TITLE`` characters."""
    return title[:MAX_EVENT_TITLE] if title and len(title) > MAX_EVENT_TITLE else title


_LINK_SOURCES = msgspec.json.Decoder(LinkSources)


def link_sources(metadata_json: bytes) -> LinkSources | None:
    """The link keys of the metadata exactly as stored (read back from the bytes written, so the
    event and the row cannot differ); ``None`` when one is not a string."""
    try:
        return _LINK_SOURCES.decode(metadata_json)
    except msgspec.ValidationError:
        return None


# Bumped when the metadata a mapping writes changes shape: ``rederive`` re-maps the stored messages
# of an older one from their raw keys (2: seed-shaped CRM context, participant names, vetted URLs,
# ai_insights, talk time).
METADATA_VERSION = 2


def link_refused(link: Any, links: HostAllowList) -> LinkReason | None:
    """Why the message's link (the first present candidate, as sent) is refused, or ``None``.

    Stored as the metadata key ``link_refused`` when the link keys had to be nulled: the linker
    then answers that reason instead of "no link" (or, for Gong, a link constructed from the call
    id: a refused value is never papered over by a later candidate)."""
    if not isinstance(link, str) or not link:
        return None
    return vet_url(link, links)[1]


def safe_url(value: Any, links: HostAllowList) -> str | None:
    """A URL a UI may render as it is (the linker's rule, :func:`vet_url`), else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    return vet_url(value, links)[0]


def ai_insights(
    summary: str | None = None,
    key_points: list[str] | None = None,
    action_items: list[dict[str, Any]] | None = None,
    topics: list[str] | None = None,
    outcome: str | None = None,
) -> dict[str, Any]:
    """The providers' own AI output in one shape for both sources: ``summary`` (text or null),
    ``key_points`` (texts), ``action_items`` (``{text, assignee, t}``: who, a name or an address or
    null; ``t`` seconds into the recording or null), ``topics`` (names), ``outcome`` (text or null).
    Every message has it, empty where the provider sent nothing; only a Gong call marked private has
    none (null: withheld, not empty)."""
    return {
        "summary": summary or None,
        "key_points": key_points or [],
        "action_items": action_items or [],
        "topics": topics or [],
        "outcome": outcome or None,
    }


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 with any offset (or ``Z``) to aware UTC; unparseable -> ``None`` (tolerant reader)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. year 1 with a positive offset
        return None


def clean_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters; providers' text occasionally does."""
    if value is None:
        return None
    return value.replace("\x00", "") if "\x00" in value else value


def https_host(url: str | None) -> str | None:
    if not url or not url.startswith("https://"):
        return None
    host = url[8:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return host or None
