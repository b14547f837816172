"""The linker's HTTP API. Every route needs a bearer token; a message, feature or workspace the
token cannot see is a 404, exactly like one that does not exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from callstream.contracts import Source
from callstream.runtime import ApiError, BadCursor, decode_keyset_cursor

from . import _queries as q
from ._auth import Access, gone, not_found
from ._links import moment_link, needs_gong_host
from ._lookup import LinkLookup
from ._schemas import (
    MAX_RESOLVE_BODY,
    MESSAGE_FIELDS,
    Author,
    CustomerOut,
    ErrorBody,
    FeatureMessage,
    LinkRecord,
    MessageMoment,
    MessageOut,
    MessagePage,
    ResolveRequest,
    ResolveResponse,
    message_moment,
)

WORKSPACE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_EXTERNAL_ID = 256
# Every list answers at most 200 items (a larger limit is a 400): one request cannot make the linker
# hold a tenant's every transcript (limit=5000 once answered hundreds of MB against a 768 Mi pod).
MAX_PAGE = 200
TRUNCATED_HEADER = "x-callstream-truncated"  # "true": fewer items than limit, to keep the size bound
DEFAULT_FEATURE_MESSAGES = MAX_PAGE  # was 1000: old clients asking for no limit get the most allowed
# Answers may change at any moment (a message is re-synced): clients revalidate with the ETag.
CACHE_CONTROL = CacheControlHeader(private=True, no_cache=True)

_ERRORS = {
    400: ResponseSpec(ErrorBody, description="a parameter or the body is invalid"),
    401: ResponseSpec(ErrorBody, description="no bearer token, or an unknown or revoked one"),
    404: ResponseSpec(ErrorBody, description="unknown, or not visible to this token"),
}

_LINK_EXAMPLE = {
    "message_id": "0b6f4a52-34a1-4c57-9d55-2f1d0e8c7a10",
    "source": "gong",
    "external_id": "5520183947712650031",
    "url": "https://us-48213.app.gong.io/call?id=5520183947712650031",
    "kind": "call",
    "origin": "metadata.url",
    "reason": None,
}
_UNSAFE_EXAMPLE = {**_LINK_EXAMPLE, "url": None, "reason": "host_not_allowed"}

WorkspaceQuery = Annotated[
    str, Parameter(pattern=WORKSPACE_PATTERN, description="the workspace", examples=[Example(value="acme")])
]

# ``GET /v1/messages``: optional; omitted, every workspace the token may read.
OptionalWorkspaceQuery = Annotated[
    str | None,
    Parameter(
        pattern=WORKSPACE_PATTERN,
        description="the workspace; omitted: every workspace the token may read (the admin token: all)",
        examples=[Example(value="acme")],
    ),
]


# A message that became a tombstone (deleted at the provider, erased, past retention).
_GONE = {410: ResponseSpec(ErrorBody, description="the message is a tombstone: error gone_<reason>")}


def _ok(model: type, *examples: tuple[str, Any]) -> dict[int, ResponseSpec]:
    spec = ResponseSpec(model, description="OK", examples=[Example(summary=s, value=v) for s, v in examples] or None)
    return {200: spec, **_ERRORS}


def _author(row: asyncpg.Record) -> Author:
    return Author(name=row["author_name"], email=row["author_email"], id=row["author_id"])


def build_router(
    lookup: LinkLookup, authenticate: Callable[[Request[Any, Any, Any]], Awaitable[Access]]
) -> list[Router]:
    """The ``/v1`` API, and the seed's ``GET /features/{feature_id}/messages`` (no ``/v1``, as the
    existing frontend calls it): the very same handler, so the same auth, fields and errors."""
    allow = lookup.allow

    @get(
        "/links",
        summary="The link of a message, by its provider identity",
        responses=_ok(LinkRecord, ("a Gong call", _LINK_EXAMPLE), ("an unsafe stored link", _UNSAFE_EXAMPLE)) | _GONE,
    )
    async def link_by_external_id(
        request: Request[Any, Any, Any],
        workspace_id: WorkspaceQuery,
        source: FromQuery[Source],
        external_id: Annotated[
            str, Parameter(min_length=1, max_length=MAX_EXTERNAL_ID, examples=[Example(value="5520183947712650031")])
        ],
    ) -> LinkRecord:
        access = await authenticate(request)
        return await lookup.by_ident(access, workspace_id, source, external_id)

    async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # An HTTP route's guards are given its Request; they run before the body is read.
        request = cast("Request[Any, Any, Any]", connection)
        request.state.access = await authenticate(request)

    @post(
        "/links/resolve",
        status_code=200,
        guards=[authenticated],
        request_max_body_size=MAX_RESOLVE_BODY,
        summary="Links of up to 1,000 messages by id (null for unknown or invisible ones)",
        responses=_ok(
            ResolveResponse,
            ("one known, one unknown", {"links": {_LINK_EXAMPLE["message_id"]: _LINK_EXAMPLE, "8c1d…": None}}),
        ),
    )
    async def resolve_links(request: Request[Any, Any, Any], data: JSONBody[ResolveRequest]) -> ResolveResponse:
        # The guard authenticated before the body was read (litestar reads it for ``data``).
        access: Access = request.state.access
        return ResolveResponse(links=await lookup.by_ids(access, data.message_ids))

    @get(
        "/messages/{message_id:str}/link",
        summary="A link to a moment of the recording (Fathom); the call link with moment=false otherwise",
        responses=_ok(MessageMoment) | _GONE,
    )
    async def message_moment_link(
        request: Request[Any, Any, Any],
        message_id: FromPath[str],
        t: Annotated[
            int, Parameter(ge=0, le=7 * 86_400, description="seconds from the start", examples=[Example(value=645)])
        ],
    ) -> MessageMoment:
        access = await authenticate(request)
        facts = await lookup.facts_by_id(access, message_id)
        host = await lookup.gong_host(facts)
        return message_moment(facts.message_id, facts.source, facts.external_id, moment_link(facts, allow, t, host), t)

    @get(
        "/messages/{message_id:str}",
        summary="One message with its metadata and link",
        responses=_ok(MessageOut) | _GONE,
    )
    async def get_message(
        request: Request[Any, Any, Any],
        message_id: FromPath[str],
        include: Annotated[
            Literal["raw"] | None, Parameter(description="raw: also the provider's raw call/transcript keys")
        ] = None,
        fields: Annotated[
            str | None,
            Parameter(
                max_length=512,
                description="comma-separated fields to return (id is always returned)",
                examples=[Example(value="title,sent_at,link")],
            ),
        ] = None,
    ) -> MessageOut:
        access = await authenticate(request)
        wanted = _parse_fields(fields)
        parsed = q.parse_uuid(message_id)
        row = None if parsed is None else await q.message(lookup.pool, parsed, include == "raw")
        if row is None or not access.covers(row["workspace_id"]):
            raise not_found("message")
        if row["deleted_reason"] is not None:
            raise gone(row["deleted_reason"])
        facts = q.facts_from_row(row)
        link = lookup.link(facts, row["gong_host"] if needs_gong_host(facts) else None)
        customer = (
            None
            if row["customer_id"] is None
            else CustomerOut(
                id=str(row["customer_id"]),
                name=row["customer_name"],
                domain=row["customer_domain"],
                external_system=row["customer_external_system"],
            )
        )
        values: dict[str, Any] = {
            "workspace_id": row["workspace_id"],
            "source": row["source"],
            "external_id": row["external_id"],
            "title": row["title"],
            "sent_at": row["sent_at"],
            "updated_at": row["updated_at"],
            "author": _author(row),
            "channel_name": row["channel_name"],
            "content": row["content"],
            "customer": customer,
            "message_metadata": row["message_metadata"] if isinstance(row["message_metadata"], dict) else {},
            "link": link,
        }
        return MessageOut(id=str(row["id"]), **{k: v for k, v in values.items() if wanted is None or k in wanted})

    @get(
        "/messages",
        summary="Messages of a workspace, or of every workspace the token reads, newest first, keyset-paginated",
        description=(
            "Without `workspace_id`, the messages of every workspace the token may read (the admin token:"
            " every workspace), merged in one order: `sent_at` descending (none first), then `id`. Walking"
            " `next_cursor` visits each visible message once. A `workspace_id` the token does not cover is"
            " a 404."
        ),
        responses=_ok(MessagePage),
    )
    async def list_messages(
        request: Request[Any, Any, Any],
        workspace_id: OptionalWorkspaceQuery = None,
        source: FromQuery[Source | None] = None,
        customer_id: Annotated[str | None, Parameter(max_length=64)] = None,
        integration_id: Annotated[
            str | None, Parameter(max_length=64, description="only messages this integration (a uuid) brought")
        ] = None,
        since: Annotated[datetime | None, Parameter(description="sent at or after")] = None,
        until: Annotated[datetime | None, Parameter(description="sent before")] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=512, description="next_cursor of the previous page")] = None,
    ) -> MessagePage:
        access = await authenticate(request)
        workspaces: tuple[str, ...] | None
        if workspace_id is not None:
            access.require(workspace_id, "workspace")
            workspaces = (workspace_id,)
        else:
            visible = access.workspace_filter()
            workspaces = None if visible is None else tuple(visible)
        customer = None
        if customer_id is not None:
            customer = q.parse_uuid(customer_id)
            if customer is None:
                return MessagePage(items=[], next_cursor=None)
        integration = None
        if integration_id is not None:
            integration = q.parse_uuid(integration_id)
            if integration is None:
                raise ApiError(400, "invalid_integration_id", "integration_id is not a uuid")
        try:
            after = None if cursor is None else decode_keyset_cursor(cursor, null_time=True)
        except BadCursor as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from None
        flt = q.MessageFilter(
            workspaces=workspaces,
            source=source,
            customer_id=customer,
            integration_id=integration,
            since=since,
            until=until,
        )
        items, next_cursor = await lookup.message_page(flt, after, limit)
        return MessagePage(items=items, next_cursor=next_cursor)

    @get(
        "/features/{feature_id:str}/messages",
        summary="Messages linked to a feature (the old MessageResponse fields plus source, ids, metadata and link)",
        responses=_ok(list[FeatureMessage]),
    )
    async def feature_messages(
        request: Request[Any, Any, Any],
        feature_id: FromPath[str],
        workspace_id: WorkspaceQuery,
        limit: Annotated[
            int, Parameter(ge=1, le=MAX_PAGE, description=f"at most {MAX_PAGE}")
        ] = DEFAULT_FEATURE_MESSAGES,
        include: Annotated[
            list[Literal["content", "raw"]] | None,
            Parameter(description="content: the transcripts; raw: the provider's raw keys in message_metadata"),
        ] = None,
    ) -> Response[list[FeatureMessage]]:
        access = await authenticate(request)
        access.require(workspace_id, "feature")
        if not await q.feature_exists(lookup.pool, workspace_id, feature_id):
            raise not_found("feature")
        # The seed's path keeps the old answer, transcripts included, for the existing frontend that
        # cannot ask for them; /v1 leaves them out of the list unless asked (#20: bounded answers).
        # Both are bounded by ``limit`` and the size cut (TRUNCATED_HEADER).
        legacy = include is None and not request.scope["path"].startswith("/v1/")
        wanted = frozenset(("content",) if legacy else (include or ()))
        with_content = "content" in wanted
        found = await q.feature_messages(
            lookup.pool, workspace_id, feature_id, limit, content=with_content, raw="raw" in wanted
        )
        rows = found.rows
        facts = [q.facts_from_row(r, "message_metadata") for r in rows]
        hosts = await lookup.gong_hosts({f.workspace_id for f in facts if needs_gong_host(f)})
        items = [
            FeatureMessage(
                id=f.message_id,
                content=r["content"] if with_content else msgspec.UNSET,
                sent_at=r["sent_at"],
                sender_name=r["sender_name"],
                channel_name=r["channel_name"],
                customer_name=r["customer_name"],
                customer_email=r["customer_email"],
                ai_insights=r["ai_insights"] if isinstance(r["ai_insights"], dict) else None,
                source=f.source,
                external_id=f.external_id,
                message_metadata=r["message_metadata"] if isinstance(r["message_metadata"], dict) else {},
                link=lookup.link(f, hosts.get(f.workspace_id)),
            )
            for r, f in zip(rows, facts, strict=True)
        ]
        # The old answer is a bare list: a page cut short by the size bound says so in a header.
        return Response(items, headers={TRUNCATED_HEADER: "true"} if found.truncated else None)

    v1 = Router(
        "/v1",
        route_handlers=[
            link_by_external_id,
            resolve_links,
            message_moment_link,
            get_message,
            list_messages,
            feature_messages,
        ],
        cache_control=CACHE_CONTROL,
        security=[{"bearer": []}],
        tags=["links"],
    )
    seed = Router(
        "/", route_handlers=[feature_messages], cache_control=CACHE_CONTROL, security=[{"bearer": []}], tags=["links"]
    )
    return [v1, seed]


def _parse_fields(fields: str | None) -> frozenset[str] | None:
    if fields is None:
        return None
    wanted = frozenset(f.strip() for f in fields.split(",") if f.strip()) - {"id"}
    unknown = wanted - MESSAGE_FIELDS
    if unknown:
        raise ApiError(400, "invalid_fields", f"unknown fields: {', '.join(sorted(unknown))}")
    return wanted
