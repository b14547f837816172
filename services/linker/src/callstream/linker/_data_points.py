"""Data points: values extracted from a call, each linked back to the moment it came from.

``POST /v1/messages/{id}/data-points`` publishes one ``DataPointRecorded`` per data point on
``datapoints.recorded`` and answers 202 once JetStream has acknowledged every one: the linker
never writes the database (the normalizer stores them). ``GET /v1/messages/{id}/data-points`` and
``GET /v1/features/{id}/data-points`` read what was stored, newest first in keyset pages, each
with its message's link pointed at the evidence moment (:func:`moment_link`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import asyncpg
import msgspec
from litestar import Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, Parameter

from callstream.contracts import (
    DATAPOINTS_RECORDED,
    DataPointKey,
    DataPointRecorded,
    Evidence,
    Extractor,
    IntegerValue,
    NumericValue,
    Source,
    TextValue,
    data_point_event_id,
    value_count,
)
from callstream.runtime import ApiError, Broker, get_logger

from . import _queries as q
from ._auth import Access, not_found
from ._links import LinkFacts, MomentLink, moment_link, needs_gong_host
from ._lookup import LinkLookup
from ._publish import EventPublisher
from ._schemas import ErrorBody

__all__ = ["MAX_DATA_POINTS", "MAX_PAGE", "build_data_points_router"]

log = get_logger(__name__)

MAX_DATA_POINTS = 500  # per POST
MAX_PAGE = 200
MAX_BODY = 16 * 1024 * 1024  # 500 points of the longest text and quote fit
_encode = msgspec.json.Encoder().encode
CACHE_CONTROL = CacheControlHeader(private=True, no_cache=True)  # as the other answers: revalidate

Key = Annotated[str | None, Parameter(max_length=128, description="only this data_point_key")]
Category = Annotated[str | None, Parameter(max_length=128, description="only this data_point_category")]
Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description=f"at most {MAX_PAGE}")]
Cursor = Annotated[str | None, Parameter(max_length=128, description="next_cursor of the previous page")]
WorkspaceQuery = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the workspace")]


class DataPointIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of ``numeric_value``, ``integer_value`` and ``text_value``."""

    key: DataPointKey
    category: DataPointKey
    numeric_value: NumericValue | None = None
    integer_value: IntegerValue | None = None
    text_value: TextValue | None = None
    feature_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    evidence: Evidence | None = None
    extractor: Extractor


class DataPointsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_points: Annotated[list[DataPointIn], msgspec.Meta(min_length=1, max_length=MAX_DATA_POINTS)]


class DataPointsAccepted(msgspec.Struct, kw_only=True):
    """Published and acknowledged; ``duplicates`` were already accepted (a resent request)."""

    message_id: str
    accepted: int
    duplicates: int
    event_ids: list[str]


class DataPointOut(msgspec.Struct, kw_only=True):
    id: str
    workspace_id: str
    message_id: str
    source: Source
    external_id: str
    feature_id: str | None
    key: str
    category: str
    numeric_value: float | None
    integer_value: int | None
    text_value: str | None
    evidence: Evidence | None
    extractor: Extractor
    recorded_at: datetime
    updated_at: datetime
    link: MomentLink


class DataPointPage(msgspec.Struct, kw_only=True):
    """``next_cursor`` is null on the last page; pass it back as ``cursor`` for the next one."""

    items: list[DataPointOut]
    next_cursor: str | None


_ERRORS = {
    400: ResponseSpec(ErrorBody, description="a parameter or the body is invalid"),
    401: ResponseSpec(ErrorBody, description="no bearer token, or an unknown or revoked one"),
    403: ResponseSpec(ErrorBody, description="the token may read this workspace but not write to it"),
    404: ResponseSpec(ErrorBody, description="unknown, or not visible to this token"),
}
_EXAMPLE_POST = {
    "data_points": [
        {
            "key": "mrr",
            "category": "revenue",
            "numeric_value": 1200.0,
            "feature_id": "pricing-page",
            "evidence": {"t": 478.5, "quote": "we pay about twelve hundred a month"},
            "extractor": {"name": "revenue-extractor", "version": "1.4.0"},
        }
    ]
}


# Keyset pages over data_points.seq, newest first: a page starts strictly after the last row of
# the previous one, so points stored meanwhile never shift or repeat rows already seen.
def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(_encode([seq])).decode().rstrip("=")


def _decode_cursor(text: str) -> int:
    try:
        [seq] = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), type=list[int])
        return seq
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this service issued") from None


_COLUMNS = (
    "d.id as data_point_id, d.seq, d.workspace_id, d.message_id, d.feature_id, d.data_point_key, d.data_point_category,"
    " d.numeric_value, d.integer_value, d.text_value, d.evidence_t, d.evidence_quote,"
    " d.extractor_name, d.extractor_version, d.recorded_at, d.updated_at"
)


@dataclass(frozen=True, slots=True)
class PointFilter:
    key: str | None
    category: str | None
    after: int | None
    limit: int


def _where(flt: PointFilter, args: list[Any]) -> str:
    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = []
    if flt.key is not None:
        where.append(f"d.data_point_key = {arg(flt.key)}")
    if flt.category is not None:
        where.append(f"d.data_point_category = {arg(flt.category)}")
    if flt.after is not None:
        where.append(f"d.seq < {arg(flt.after)}")
    return "".join(" and " + w for w in where) + f" order by d.seq desc limit {arg(flt.limit + 1)}"


async def _message_points(pool: asyncpg.Pool, message_id: uuid.UUID, flt: PointFilter) -> list[asyncpg.Record]:
    args: list[Any] = [message_id]
    rows: list[asyncpg.Record] = await pool.fetch(
        f"select {_COLUMNS} from data_points d where d.message_id = $1" + _where(flt, args), *args
    )
    return rows


async def _feature_points(pool: asyncpg.Pool, workspace_id: str, feature_id: str, flt: PointFilter) -> list[Any]:
    args: list[Any] = [workspace_id, feature_id]
    rows: list[asyncpg.Record] = await pool.fetch(
        f"select {_COLUMNS}, m.id, m.source, m.external_id, m.version, {q.LINK_FIELDS}"
        " from data_points d join messages m on m.id = d.message_id"
        " where d.workspace_id = $1 and d.feature_id = $2 and m.deleted_at is null" + _where(flt, args),
        *args,
    )
    return rows


def _item(row: asyncpg.Record, facts: LinkFacts, link: MomentLink) -> DataPointOut:
    t, quote = row["evidence_t"], row["evidence_quote"]
    return DataPointOut(
        id=str(row["data_point_id"]),
        workspace_id=row["workspace_id"],
        message_id=facts.message_id,
        source=facts.source,
        external_id=facts.external_id,
        feature_id=row["feature_id"],
        key=row["data_point_key"],
        category=row["data_point_category"],
        numeric_value=row["numeric_value"],
        integer_value=row["integer_value"],
        text_value=row["text_value"],
        evidence=None if t is None and quote is None else Evidence(t=t, quote=quote),
        extractor=Extractor(name=row["extractor_name"], version=row["extractor_version"]),
        recorded_at=row["recorded_at"],
        updated_at=row["updated_at"],
        link=link,
    )


def _validate(points: list[DataPointIn]) -> None:
    """Exactly one value each, and one point per identity in a request (two would race for the
    same row with the same version)."""
    seen: set[tuple[str, str | None, str]] = set()
    for i, p in enumerate(points):
        if value_count(p.numeric_value, p.integer_value, p.text_value) != 1:
            raise ApiError(
                400,
                "invalid_data_point",
                f"data_points[{i}]: exactly one of numeric_value, integer_value, text_value",
            )
        identity = (p.key, p.feature_id, p.extractor.name)
        if identity in seen:
            raise ApiError(
                400,
                "duplicate_data_point",
                f"data_points[{i}]: another data point has the same key, feature_id and extractor name",
            )
        seen.add(identity)


def _events(facts: LinkFacts, points: list[DataPointIn], now: datetime) -> list[DataPointRecorded]:
    events = []
    for p in points:
        content = _encode((p.category, p.numeric_value, p.integer_value, p.text_value, p.evidence))
        event_id = data_point_event_id(facts.workspace_id, facts.message_id, p.key, p.feature_id, p.extractor, content)
        events.append(
            DataPointRecorded(
                event_id=event_id,
                workspace_id=facts.workspace_id,
                message_id=facts.message_id,
                source=facts.source,
                external_id=facts.external_id,
                key=p.key,
                category=p.category,
                numeric_value=p.numeric_value,
                integer_value=p.integer_value,
                text_value=p.text_value,
                feature_id=p.feature_id,
                evidence=p.evidence,
                extractor=p.extractor,
                recorded_at=now,
            )
        )
    return events


def build_data_points_router(
    lookup: LinkLookup,
    authenticate: Callable[[Request[Any, Any, Any]], Awaitable[Access]],
    broker: Broker,
) -> Router:
    publisher = EventPublisher(broker)
    allow = lookup.allow

    async def links(rows: list[asyncpg.Record], facts: list[LinkFacts]) -> list[DataPointOut]:
        hosts = await lookup.gong_hosts({f.workspace_id for f in facts if needs_gong_host(f)})
        return [
            _item(r, f, moment_link(f, allow, r["evidence_t"], hosts.get(f.workspace_id)))
            for r, f in zip(rows, facts, strict=True)
        ]

    def page(rows: list[asyncpg.Record], items: list[DataPointOut], limit: int) -> DataPointPage:
        return DataPointPage(
            items=items, next_cursor=_encode_cursor(rows[limit - 1]["seq"]) if len(rows) > limit else None
        )

    async def may_record(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """Before the body (up to 16 MB) is read: the token, and for any token but the admin's the
        answer it gets anyway (404 for a message it cannot see, else 403), so an anonymous or
        read-only caller never makes the linker decode a body."""
        request = cast("Request[Any, Any, Any]", connection)  # an HTTP route's guard gets its Request
        access = await authenticate(request)
        if not access.is_admin:
            # A write, like changing a feature link: workspace tokens read (their scope is "read"
            # until the console issue adds "manage"), so one leaked read token cannot plant values.
            await lookup.facts_by_id(access, request.path_params["message_id"])
            raise ApiError(403, "forbidden", "recording data points needs the admin token")
        request.state.access = access

    @post(
        "/messages/{message_id:str}/data-points",
        status_code=202,
        guards=[may_record],
        request_max_body_size=MAX_BODY,
        summary=f"Record up to {MAX_DATA_POINTS} data points of a message (202 once published)",
        responses={
            202: ResponseSpec(DataPointsAccepted, description="published; stored by the normalizer shortly"),
            **_ERRORS,
            503: ResponseSpec(ErrorBody, description="the event broker cannot take them now; retry"),
        },
    )
    async def record_data_points(
        request: Request[Any, Any, Any],
        message_id: FromPath[str],
        data: Annotated[DataPointsIn, Body(examples=[Example(summary="one data point", value=_EXAMPLE_POST)])],
    ) -> DataPointsAccepted:
        access: Access = request.state.access  # the admin's (may_record)
        facts = await lookup.facts_by_id(access, message_id)
        _validate(data.data_points)
        events = _events(facts, data.data_points, datetime.now(UTC))
        published = [(_encode(e), e.event_id) for e in events]
        duplicates = await publisher.publish(DATAPOINTS_RECORDED, published, request.headers.get("traceparent"))
        log.info("data points accepted", message_id=facts.message_id, accepted=len(events), duplicates=duplicates)
        return DataPointsAccepted(
            message_id=facts.message_id,
            accepted=len(events),
            duplicates=duplicates,
            event_ids=[e.event_id for e in events],
        )

    @get(
        "/messages/{message_id:str}/data-points",
        summary="Data points of a message, newest first, each linked to its evidence moment",
        responses={200: ResponseSpec(DataPointPage, description="OK"), **_ERRORS},
    )
    async def message_data_points(
        request: Request[Any, Any, Any],
        message_id: FromPath[str],
        key: Key = None,
        category: Category = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DataPointPage:
        access = await authenticate(request)
        facts = await lookup.facts_by_id(access, message_id)
        flt = PointFilter(key, category, None if cursor is None else _decode_cursor(cursor), limit)
        rows = await _message_points(lookup.pool, uuid.UUID(facts.message_id), flt)
        items = await links(rows[:limit], [facts] * min(len(rows), limit))
        return page(rows, items, limit)

    @get(
        "/features/{feature_id:str}/data-points",
        summary="Data points of a feature, newest first, each linked to its evidence moment",
        responses={200: ResponseSpec(DataPointPage, description="OK"), **_ERRORS},
    )
    async def feature_data_points(
        request: Request[Any, Any, Any],
        feature_id: FromPath[str],
        workspace_id: WorkspaceQuery,
        key: Key = None,
        category: Category = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DataPointPage:
        access = await authenticate(request)
        access.require(workspace_id, "feature")
        if not await q.feature_exists(lookup.pool, workspace_id, feature_id):
            raise not_found("feature")
        flt = PointFilter(key, category, None if cursor is None else _decode_cursor(cursor), limit)
        rows = await _feature_points(lookup.pool, workspace_id, feature_id, flt)
        items = await links(rows[:limit], [q.facts_from_row(r) for r in rows[:limit]])
        return page(rows, items, limit)

    return Router(
        "/v1",
        route_handlers=[record_data_points, message_data_points, feature_data_points],
        cache_control=CACHE_CONTROL,
        security=[{"bearer": []}],
        tags=["data points"],
    )
