"""Feature links over HTTP: ``PUT`` and ``DELETE /v1/features/{feature_id}/messages/{message_id}``
(or ``.../messages/by-external/{source}/{external_id}?workspace_id=``).

The linker never writes the database: a request is published as ``FeatureLinked`` on
``features.linked`` or ``FeatureUnlinked`` on ``features.unlinked`` and answered 202 once JetStream
has acknowledged it (503 with ``Retry-After`` when the broker cannot confirm); the normalizer stores
it, in stream order, usually within milliseconds.

A retried request is one event: its ``Nats-Msg-Id`` is derived from what it asks (link or unlink,
the feature, the message, the feature name) and from the link's stored state it was made against
(the link's ``linked_at``, the feature's ``updated_at``, which an unlink moves), or from the
client's ``Idempotency-Key`` when it sends one. So a PUT resent while the first is in flight is a
duplicate, while a PUT after its DELETE was stored is a new event. Two opposite requests for the
same link sent faster than the normalizer stores the first (milliseconds) without an
``Idempotency-Key`` can collapse; a client toggling that fast sends one.

Who may: the admin token. A workspace token sees its own workspaces as everywhere else (another
workspace's message is a 404), and is refused with 403 there: tokens carry no ``manage`` scope yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Router, delete, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, JSONBody, Parameter

from callstream.contracts import (
    FEATURES_LINKED,
    FEATURES_UNLINKED,
    FeatureLinked,
    FeatureUnlinked,
    MessageRef,
    Source,
    feature_link_event_id,
)
from callstream.runtime import ApiError, Broker, get_logger

from . import _queries as q
from ._auth import Access, not_found
from ._publish import EventPublisher
from ._schemas import ErrorBody

__all__ = ["FeatureLinkAccepted", "FeatureLinkIn", "build_feature_links_router"]

log = get_logger(__name__)

MAX_FEATURE_ID = 256
MAX_IDEMPOTENCY_KEY = 200
# A PUT's body is at most {"feature_name": <512 characters>}, 12 bytes each even escaped as
# surrogate pairs: litestar would otherwise read 10 MB of one before the handler checks the token.
MAX_BODY = 16 * 1024
_encode = msgspec.json.Encoder().encode

Change = Literal["linked", "unlinked"]
FeatureId = Annotated[
    str, Parameter(min_length=1, max_length=MAX_FEATURE_ID, description="the feature", examples=[Example(value="sso")])
]
WorkspaceQuery = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the workspace")]
ExternalId = Annotated[str, Parameter(min_length=1, max_length=256, description="the provider's id of the call")]


class FeatureLinkIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Optional body of a PUT: the feature's display name (kept on the feature)."""

    feature_name: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None


class FeatureLinkAccepted(msgspec.Struct, kw_only=True):
    """Published and acknowledged; the normalizer stores it. ``duplicate``: this request was
    already accepted (a retry), nothing new was published."""

    workspace_id: str
    feature_id: str
    message_id: str
    source: Source
    external_id: str
    change: Change
    event_id: str
    duplicate: bool


_ERRORS = {
    400: ResponseSpec(ErrorBody, description="a parameter or the body is invalid"),
    401: ResponseSpec(ErrorBody, description="no bearer token, or an unknown or revoked one"),
    403: ResponseSpec(ErrorBody, description="the token may read this workspace but not change it"),
    404: ResponseSpec(ErrorBody, description="unknown message, or not visible to this token"),
    503: ResponseSpec(ErrorBody, description="the event broker did not confirm; retry after Retry-After"),
}

# The message and the link's stored state, in one read.
_STATE = (
    "(select mf.linked_at from message_features mf where mf.workspace_id = m.workspace_id"
    "  and mf.feature_id = $1 and mf.source = m.source and mf.external_id = m.external_id) as linked_at,"
    " (select f.updated_at from features f where f.workspace_id = m.workspace_id and f.id = $1) as feature_changed_at"
)
_BY_ID = f"select m.id, m.workspace_id, m.source, m.external_id, {_STATE} from messages m where m.id = $2"
_BY_IDENT = (
    f"select m.id, m.workspace_id, m.source, m.external_id, {_STATE} from messages m"
    " where m.workspace_id = $2 and m.source = $3 and m.external_id = $4"
)


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat()


def build_feature_links_router(
    pool: Callable[[], asyncpg.Pool],
    broker: Broker,
    authenticate: Callable[[Request[Any, Any, Any]], Awaitable[Access]],
) -> Router:
    publisher = EventPublisher(broker)

    async def change(
        request: Request[Any, Any, Any],
        kind: Change,
        feature_id: str,
        row: asyncpg.Record | None,
        access: Access,
        feature_name: str | None = None,
    ) -> FeatureLinkAccepted:
        if row is None or not access.covers(row["workspace_id"]):
            raise not_found("message")
        if not access.is_admin:
            raise ApiError(403, "forbidden", "changing feature links needs the admin token")
        workspace_id, source, external_id = row["workspace_id"], row["source"], row["external_id"]
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise ApiError(400, "invalid_idempotency_key", f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters")
        basis = (
            f"key {key}"
            if key is not None
            else f"state {_stamp(row['linked_at'])} {_stamp(row['feature_changed_at'])} name {feature_name or ''}"
        )
        event_id = feature_link_event_id(kind, workspace_id, feature_id, source, external_id, basis)
        ref = MessageRef(message_id=str(row["id"]), source=source, external_id=external_id)
        event: FeatureLinked | FeatureUnlinked = (
            FeatureLinked(workspace_id=workspace_id, feature_id=feature_id, feature_name=feature_name, message=ref)
            if kind == "linked"
            else FeatureUnlinked(workspace_id=workspace_id, feature_id=feature_id, message=ref)
        )
        subject = FEATURES_LINKED if kind == "linked" else FEATURES_UNLINKED
        duplicate = (
            await publisher.publish(subject, [(_encode(event), event_id)], request.headers.get("traceparent")) > 0
        )
        log.info("feature link change accepted", change=kind, workspace_id=workspace_id, duplicate=duplicate)
        return FeatureLinkAccepted(
            workspace_id=workspace_id,
            feature_id=feature_id,
            message_id=str(row["id"]),
            source=source,
            external_id=external_id,
            change=kind,
            event_id=event_id,
            duplicate=duplicate,
        )

    async def by_id(feature_id: str, message_id: str, workspace_id: str | None) -> asyncpg.Record | None:
        parsed = q.parse_uuid(message_id)
        row = None if parsed is None else await pool().fetchrow(_BY_ID, feature_id, parsed)
        # A workspace named in the query must be the message's (else: no such message there).
        return None if row is None or (workspace_id is not None and row["workspace_id"] != workspace_id) else row

    async def by_ident(feature_id: str, workspace_id: str, source: str, external_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await pool().fetchrow(_BY_IDENT, feature_id, workspace_id, source, external_id)
        return row

    responses = {202: ResponseSpec(FeatureLinkAccepted, description="published and acknowledged"), **_ERRORS}
    path = "/features/{feature_id:str}/messages/{message_id:str}"
    ext_path = "/features/{feature_id:str}/messages/by-external/{source:str}/{external_id:str}"

    @put(
        path,
        status_code=202,
        request_max_body_size=MAX_BODY,
        summary="Link a message to a feature (published; stored by the normalizer)",
        responses=responses,
    )
    async def link_by_id(
        request: Request[Any, Any, Any],
        feature_id: FeatureId,
        message_id: FromPath[str],
        data: JSONBody[FeatureLinkIn | None] = None,
        workspace_id: Annotated[str | None, Parameter(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    ) -> FeatureLinkAccepted:
        access = await authenticate(request)
        row = await by_id(feature_id, message_id, workspace_id)
        return await change(request, "linked", feature_id, row, access, data.feature_name if data else None)

    @delete(path, status_code=202, summary="Unlink a message from a feature", responses=responses)
    async def unlink_by_id(
        request: Request[Any, Any, Any],
        feature_id: FeatureId,
        message_id: FromPath[str],
        workspace_id: Annotated[str | None, Parameter(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    ) -> FeatureLinkAccepted:
        access = await authenticate(request)
        return await change(request, "unlinked", feature_id, await by_id(feature_id, message_id, workspace_id), access)

    @put(
        ext_path,
        status_code=202,
        request_max_body_size=MAX_BODY,
        summary="Link a message, named by its provider identity",
        responses=responses,
    )
    async def link_by_external(
        request: Request[Any, Any, Any],
        feature_id: FeatureId,
        source: FromPath[Source],
        external_id: ExternalId,
        workspace_id: WorkspaceQuery,
        data: JSONBody[FeatureLinkIn | None] = None,
    ) -> FeatureLinkAccepted:
        access = await authenticate(request)
        access.require(workspace_id, "message")
        row = await by_ident(feature_id, workspace_id, source, external_id)
        return await change(request, "linked", feature_id, row, access, data.feature_name if data else None)

    @delete(ext_path, status_code=202, summary="Unlink a message, named by its provider identity", responses=responses)
    async def unlink_by_external(
        request: Request[Any, Any, Any],
        feature_id: FeatureId,
        source: FromPath[Source],
        external_id: ExternalId,
        workspace_id: WorkspaceQuery,
    ) -> FeatureLinkAccepted:
        access = await authenticate(request)
        access.require(workspace_id, "message")
        row = await by_ident(feature_id, workspace_id, source, external_id)
        return await change(request, "unlinked", feature_id, row, access)

    return Router(
        "/v1",
        route_handlers=[link_by_id, unlink_by_id, link_by_external, unlink_by_external],
        security=[{"bearer": []}],
        tags=["feature links"],
    )
