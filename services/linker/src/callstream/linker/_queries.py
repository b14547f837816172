"""The read side: every query the linker runs (asyncpg, parameterised, read only).

Only the link-bearing metadata keys are read for link look-ups: ``jsonb_each`` de-TOASTs the
metadata once and hands back a few short strings instead of the whole document (which can carry
the provider's raw call and transcript).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from callstream.contracts import Source
from callstream.runtime import KeysetCursor

from ._links import LinkFacts

HEAVY_METADATA_KEYS = ("raw_call_data", "transcript_data", "raw_session_data")
_LINK_KEYS = ("recording_url", "share_url", "url", "call_id", "link_refused")


def _metadata_fields(keys: tuple[str, ...], name: str) -> str:
    """Some keys of a message's metadata as one small jsonb object, in one pass over it."""
    listed = ", ".join(f"'{k}'" for k in keys)
    return (
        "(select coalesce(jsonb_object_agg(key, value), '{}'::jsonb) from jsonb_each(m.message_metadata)"
        f" where key in ({listed})) as {name}"
    )


# The link-bearing keys of a message as ``link_fields``: the one way every linker query reads them.
LINK_FIELDS = _metadata_fields(_LINK_KEYS, "link_fields")
# A list item's: the same, and the length of the call the normalizer keeps (``duration_seconds``).
SUMMARY_FIELDS = _metadata_fields((*_LINK_KEYS, "duration_seconds"), "link_fields")
_FACTS_COLUMNS = f"m.id, m.workspace_id, m.source, m.external_id, m.version, m.deleted_reason, {LINK_FIELDS}"
_LIGHT_METADATA = "m.message_metadata - " + " - ".join(f"'{k}'" for k in HEAVY_METADATA_KEYS)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def facts_from_row(row: asyncpg.Record, metadata_column: str = "link_fields") -> LinkFacts:
    return LinkFacts.from_metadata(
        message_id=str(row["id"]),
        workspace_id=row["workspace_id"],
        source=row["source"],
        external_id=row["external_id"],
        version=row["version"],
        metadata=row[metadata_column],
        deleted_reason=row.get("deleted_reason"),
    )


async def facts_by_ident(pool: asyncpg.Pool, workspace_id: str, source: str, external_id: str) -> LinkFacts | None:
    row = await pool.fetchrow(
        f"select {_FACTS_COLUMNS} from messages m where m.workspace_id = $1 and m.source = $2 and m.external_id = $3",
        workspace_id,
        source,
        external_id,
    )
    return None if row is None else facts_from_row(row)


async def facts_by_ids(pool: asyncpg.Pool, ids: list[uuid.UUID], workspaces: list[str] | None) -> list[LinkFacts]:
    """Visible messages among ``ids`` (``workspaces`` None: every workspace)."""
    rows = await pool.fetch(
        f"select {_FACTS_COLUMNS} from messages m"
        " where m.id = any($1::uuid[]) and ($2::text[] is null or m.workspace_id = any($2::text[]))",
        ids,
        workspaces,
    )
    return [facts_from_row(r) for r in rows]


async def gong_hosts(pool: asyncpg.Pool, workspaces: list[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "select workspace_id, host from provider_hosts where source = 'gong' and workspace_id = any($1::text[])",
        workspaces,
    )
    return {r["workspace_id"]: r["host"] for r in rows}


async def message(pool: asyncpg.Pool, message_id: uuid.UUID, include_raw: bool) -> asyncpg.Record | None:
    metadata = "m.message_metadata" if include_raw else _LIGHT_METADATA
    return await pool.fetchrow(
        "select m.id, m.workspace_id, m.source, m.external_id, m.title, m.sent_at, m.updated_at, m.version,"
        " m.author_name, m.author_email, m.author_id, m.channel_name, m.content, m.deleted_reason,"
        f" {metadata} as message_metadata, {LINK_FIELDS},"
        " c.id as customer_id, c.name as customer_name, c.domain as customer_domain,"
        " c.external_system as customer_external_system, ph.host as gong_host"
        " from messages m"
        " left join customers c on c.id = m.customer_id"
        " left join provider_hosts ph on ph.workspace_id = m.workspace_id and ph.source = 'gong'"
        " where m.id = $1",
        message_id,
    )


# Keyset pagination over (sent_at desc nulls first, id desc): the order of the
# (workspace_id, sent_at desc, id desc) index, and across workspaces of (sent_at desc, id desc). A
# page starts strictly after the last row of the previous one, so rows inserted meanwhile never
# shift, repeat or hide rows that already existed. The cursor (runtime's keyset cursor, its time
# null for a message without one) is a position only, in any scope.


@dataclass(frozen=True, slots=True)
class MessageFilter:
    # The workspaces to list: one (``?workspace_id=``), the token's, or ``None`` for every workspace
    # (the admin token without ``workspace_id``).
    workspaces: tuple[str, ...] | None
    source: Source | None = None
    customer_id: uuid.UUID | None = None
    integration_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


# Up to this many workspaces (a token's, when the caller names none) are listed one workspace at a
# time and merged; more, with ``workspace_id = any(...)`` and the planner's choice. Measured on
# 100,000 messages over 500 workspaces plus 50 workspaces of only old messages (a page of 51,
# statements prepared and reused as asyncpg does, 2 shared cores):
# - ``= any`` alone: 2-3 ms for 2, 50 or 500 ordinary workspaces, but 156 ms for the 50 old ones:
#   the planner walks messages_sent_order (newest first, every workspace), filters, and the rows
#   it wants are at the far end;
# - one workspace at a time (each reads at most a page of messages_workspace_sent): 1-2.6 ms for 2
#   workspaces, old or not; 1.7 ms for the 50 old ones, 6 for 50 ordinary ones, 10-11 for 100 (28
#   at limit 200), and ~40 for 500, growing with the count.
# So per workspace for the few a product's token covers, and the planner beyond that, where the
# token's workspaces hold most messages and the global index finds a page at once (101 or 500: 2-3
# ms). A token of over 100 workspaces that all went quiet long ago would be slow again: none seen.
PER_WORKSPACE_MAX = 100
_LIST_COLUMNS = (
    "m.id, m.workspace_id, m.source, m.external_id, m.title, m.sent_at, m.channel_name,"
    " m.author_name, m.author_email, m.author_id, m.customer_id, m.integration_id, m.version,"
    f" coalesce(c.name, c.domain) as customer_name, {SUMMARY_FIELDS}"
)
_LIST_ORDER = "order by m.sent_at desc, m.id desc"


async def list_messages(
    pool: asyncpg.Pool, flt: MessageFilter, cursor: KeysetCursor | None, limit: int
) -> list[asyncpg.Record]:
    """A page of visible messages, newest first, after ``cursor``. Tombstones are answered by id
    only (410), never listed."""
    if flt.workspaces is not None and not flt.workspaces:
        return []  # a token of no workspace sees nothing
    args: list[Any] = []
    where = ["m.deleted_at is null"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt.source is not None:
        where.append(f"m.source = {arg(flt.source)}")
    if flt.customer_id is not None:
        where.append(f"m.customer_id = {arg(flt.customer_id)}")
    if flt.integration_id is not None:  # stored as the gateway's text form of its uuid
        where.append(f"m.integration_id = {arg(str(flt.integration_id))}")
    if flt.since is not None:
        where.append(f"m.sent_at >= {arg(flt.since)}")
    if flt.until is not None:
        where.append(f"m.sent_at < {arg(flt.until)}")
    if cursor is not None:
        if cursor.at is None:
            where.append(f"((m.sent_at is null and m.id < {arg(cursor.id)}) or m.sent_at is not null)")
        else:
            where.append(f"(m.sent_at, m.id) < ({arg(cursor.at)}, {arg(cursor.id)})")
    workspaces = flt.workspaces
    # A customer's or an integration's index finds their few rows directly: the workspaces are then
    # only a filter on them, whatever their number.
    by_owner = flt.customer_id is not None or flt.integration_id is not None
    if workspaces is not None and 1 < len(workspaces) <= PER_WORKSPACE_MAX and not by_owner:
        # Each workspace's first page on messages_workspace_sent, merged: the top ``limit`` of the
        # union is the top ``limit`` of the per-workspace tops (the cursor applies inside each).
        lim = arg(limit)
        page = (
            f"select p.id, p.sent_at from unnest({arg(list(workspaces))}::text[]) w(workspace_id)"
            " cross join lateral (select m.id, m.sent_at from messages m"
            f" where m.workspace_id = w.workspace_id and {' and '.join(where)} {_LIST_ORDER} limit {lim}) p"
            f" order by p.sent_at desc, p.id desc limit {lim}"
        )
        sql = (
            f"with page as ({page}) select {_LIST_COLUMNS}"
            " from page join messages m on m.id = page.id left join customers c on c.id = m.customer_id"
            f" {_LIST_ORDER}"
        )
    else:
        if workspaces is not None:
            where.append(
                f"m.workspace_id = {arg(workspaces[0])}"
                if len(workspaces) == 1
                else f"m.workspace_id = any({arg(list(workspaces))}::text[])"
            )
        # Every workspace (the admin token): one page of messages_sent_order (0013), read in order;
        # one workspace: one page of messages_workspace_sent, as before.
        sql = (
            f"select {_LIST_COLUMNS} from messages m left join customers c on c.id = m.customer_id"
            f" where {' and '.join(where)} {_LIST_ORDER} limit {arg(limit)}"
        )
    rows: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return rows


async def feature_exists(pool: asyncpg.Pool, workspace_id: str, feature_id: str) -> bool:
    found = await pool.fetchval(
        "select exists (select 1 from features where workspace_id = $1 and id = $2)", workspace_id, feature_id
    )
    return bool(found)


# The transcripts and raw keys one list answer may carry (by their stored sizes, read without
# de-TOASTing them): the rows past it are left out (``FeatureMessages.truncated``), at least one is
# always answered. With the 200-item cap and the light fields' own bounds, an answer stays within a
# few MB plus one message, whatever the tenant stored.
MAX_HEAVY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FeatureMessages:
    rows: list[asyncpg.Record]
    truncated: bool  # rows within ``limit`` were left out to keep the answer under MAX_HEAVY_BYTES


async def feature_messages(
    pool: asyncpg.Pool,
    workspace_id: str,
    feature_id: str,
    limit: int,
    *,
    content: bool = False,
    raw: bool = False,
    max_heavy_bytes: int = MAX_HEAVY_BYTES,
) -> FeatureMessages:
    """Messages linked to a feature, newest first; ``customer_email`` is the first external
    participant's address (customers are companies and carry none). The transcript (``content``)
    and the raw metadata keys are read only when asked for, and only up to ``max_heavy_bytes``."""
    metadata = "m.message_metadata" if raw else _LIGHT_METADATA
    text = "m.content" if content else "null::text as content"
    heavy = " + ".join(
        ["0"]
        + (["coalesce(octet_length(m.content), 0)"] if content else [])
        + (["pg_column_size(m.message_metadata)"] if raw else [])
    )
    order = "m.sent_at desc nulls last, m.id desc"
    rows: list[asyncpg.Record] = await pool.fetch(
        "with page as ("
        f" select m.id, sum({heavy}) over (order by {order}) - ({heavy}) as before"
        " from message_features mf join messages m on m.id = mf.message_id"
        " where mf.workspace_id = $1 and mf.feature_id = $2 and m.workspace_id = $1 and m.deleted_at is null"
        f" order by {order} limit $3)"
        f" select m.id, m.workspace_id, {text}, m.sent_at, m.author_name as sender_name, m.channel_name,"
        " c.name as customer_name,"
        " (select p.email from message_participants p where p.message_id = m.id"
        "   and p.affiliation = 'external' and p.email is not null order by p.position limit 1) as customer_email,"
        f" m.ai_insights, m.source, m.external_id, m.version, {metadata} as message_metadata,"
        " (select count(*) from page) as page_rows"
        " from page join messages m on m.id = page.id"
        " left join customers c on c.id = m.customer_id"
        f" where page.before < $4 order by {order}",
        workspace_id,
        feature_id,
        limit,
        max_heavy_bytes,
    )
    return FeatureMessages(rows=rows, truncated=bool(rows) and len(rows) < rows[0]["page_rows"])
