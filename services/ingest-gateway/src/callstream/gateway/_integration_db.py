"""Integration rows: what the admin API and the OAuth callback write and read back.

Secret columns are only ever written as envelopes (``_credentials``) and never read into a view.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from callstream.runtime import KeysetCursor, encode_keyset_cursor


class IntegrationView(msgspec.Struct, kw_only=True):
    """What the admin API returns about an integration: never a secret."""

    id: str
    workspace_id: str
    provider: str
    status: str
    auth_kind: str
    base_url: str | None
    webhook_url: str | None
    has_webhook_secret: bool
    webhook_registered: bool
    webhook_note: str | None = None  # why a Fathom OAuth integration has no webhook, when it has none
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None


_VIEW_COLUMNS = """
id::text, workspace_id, provider, status, auth_kind, base_url, settings, last_error, created_at, updated_at,
disabled_at, webhook_secret is not null as has_webhook_secret, webhook_id is not null as webhook_registered
"""


# Qualified: a bare "id" in ORDER BY is the select list's id::text, sorted as text (off the index,
# and not the uuid order the keyset compares).
_ORDER = "integrations.created_at, integrations.id"
_ORDER_NEWEST = "integrations.created_at desc, integrations.id desc"


def parse_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _view(row: asyncpg.Record, public_base_url: str | None) -> IntegrationView:
    settings: dict[str, Any] = row["settings"] or {}
    webhook_url = None
    if row["provider"] == "fathom" and row["status"] != "erased":  # an erased one has no webhook
        base = settings.get("public_base_url") or public_base_url or ""
        webhook_url = base.rstrip("/") + f"/v1/webhooks/fathom/{row['id']}"
    return IntegrationView(
        id=row["id"],
        workspace_id=row["workspace_id"],
        provider=row["provider"],
        status=row["status"],
        auth_kind=row["auth_kind"],
        base_url=row["base_url"],
        webhook_url=webhook_url,
        has_webhook_secret=row["has_webhook_secret"],
        webhook_registered=row["webhook_registered"],
        webhook_note=settings.get("webhook_note"),
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
    )


async def insert(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    integration_id: uuid.UUID,
    workspace_id: str,
    provider: str,
    auth_kind: str,
    credentials: bytes | None,
    webhook_secret: bytes | None,
    webhook_id: str | None,
    base_url: str | None,
    settings: dict[str, Any],
) -> None:
    await conn.execute(
        """insert into integrations (id, workspace_id, provider, auth_kind, credentials, webhook_secret, webhook_id,
                                     base_url, settings)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        integration_id,
        workspace_id,
        provider,
        auth_kind,
        credentials,
        webhook_secret,
        webhook_id,
        base_url,
        settings,
    )


async def view(
    conn: asyncpg.Connection | asyncpg.Pool, integration_id: uuid.UUID, public_base_url: str | None
) -> IntegrationView | None:
    row = await conn.fetchrow(f"select {_VIEW_COLUMNS} from integrations where id = $1", integration_id)
    return None if row is None else _view(row, public_base_url)


Provider = Literal["fathom", "gong"]
Status = Literal["active", "disabled", "reauth_required", "erased"]  # migrations 0001 and 0003


@dataclass(frozen=True, slots=True)
class IntegrationFilter:
    """``workspaces``: only these (a manage token's); ``None``: every workspace."""

    workspace_id: str | None = None
    workspaces: frozenset[str] | None = None
    provider: Provider | None = None
    status: Status | None = None


def _where(flt: IntegrationFilter, args: list[Any]) -> list[str]:
    # Only the conditions given, so the planner sees plain equalities (and the created_at index),
    # not "$1 is null or ..." that a generic plan cannot use an index for.
    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["true"]
    if flt.workspace_id is not None:
        where.append(f"workspace_id = {arg(flt.workspace_id)}")
    if flt.workspaces is not None:
        where.append(f"workspace_id = any({arg(sorted(flt.workspaces))}::text[])")
    if flt.provider is not None:
        where.append(f"provider = {arg(flt.provider)}")
    if flt.status is not None:
        where.append(f"status = {arg(flt.status)}")
    return where


async def views(pool: asyncpg.Pool, flt: IntegrationFilter, public_base_url: str | None) -> list[IntegrationView]:
    """Every integration that matches, oldest first (what callers of the unpaged list always had)."""
    args: list[Any] = []
    where = _where(flt, args)
    rows = await pool.fetch(
        f"select {_VIEW_COLUMNS} from integrations where {' and '.join(where)} order by {_ORDER}", *args
    )
    return [_view(row, public_base_url) for row in rows]


async def page(
    pool: asyncpg.Pool, flt: IntegrationFilter, public_base_url: str | None, after: KeysetCursor | None, limit: int
) -> tuple[list[IntegrationView], str | None]:
    """Newest first, at most ``limit``, after ``after``; and the cursor of the next page (None: the last)."""
    args: list[Any] = []
    where = _where(flt, args)
    if after is not None:
        args += [after.at, after.id]
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)  # one more tells whether a next page exists
    rows = await pool.fetch(
        f"select {_VIEW_COLUMNS} from integrations where {' and '.join(where)}"
        f" order by {_ORDER_NEWEST} limit ${len(args)}",
        *args,
    )
    items = [_view(row, public_base_url) for row in rows[:limit]]
    more = len(rows) > limit
    return items, (encode_keyset_cursor(items[-1].created_at, items[-1].id) if more else None)


async def disable(pool: asyncpg.Pool, integration_id: uuid.UUID) -> asyncpg.Record | None:
    """Mark the integration disabled (webhooks refused at once); returns what deleting its Fathom
    webhook needs."""
    return await pool.fetchrow(
        # An erased integration stays erased (disabling it again changes nothing).
        """update integrations set status = case when status = 'erased' then status else 'disabled' end,
                  disabled_at = coalesce(disabled_at, now()), updated_at = now()
           where id = $1
           returning id::text, provider, auth_kind, base_url, credentials, webhook_id""",
        integration_id,
    )


async def forget_webhook(pool: asyncpg.Pool, integration_id: uuid.UUID, webhook_id: str) -> None:
    await pool.execute(
        "update integrations set webhook_id = null, updated_at = now() where id = $1 and webhook_id = $2",
        integration_id,
        webhook_id,
    )


async def record_error(pool: asyncpg.Pool, integration_id: uuid.UUID, error: str) -> None:
    await pool.execute(
        "update integrations set last_error = $2, updated_at = now() where id = $1", integration_id, error[:500]
    )
