"""Per-workspace message retention: older messages become tombstones (reason ``retention``).

A workspace's ``message_retention_days`` (``workspace_settings``; unset = keep for ever) is set
through the admin API (``PUT /v1/workspaces/{workspace_id}/retention``). The periodic job
(``CALLSTREAM_NORMALIZER_RETENTION_SECONDS``, hourly by default; also
``callstream-normalizer retention``) erases, in batches, every message of such a workspace whose
call started (``sent_at``, else when it was stored) longer ago than that, exactly as a deletion at
the provider does (:func:`._tombstones.tombstone`: content, metadata, people and data points go,
``MessageDeleted`` is announced, the linker answers 410 ``gone_retention``). The raw events in
``CALLS_RAW`` are not touched: that stream's own age limit (30 days) stays their upper bound, and a
replay of one cannot bring a tombstone back (it was observed before the tombstone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter

from callstream.runtime import ServiceRuntime, create_pool, get_logger

from ._settings import Settings
from ._tombstones import tombstone

log = get_logger(__name__)

__all__ = ["Retention", "apply_retention", "get_retention", "retention_job", "run_retention", "set_retention"]

TOMBSTONED = Counter(
    "callstream_normalizer_retention_tombstoned_total", "Messages made tombstones by workspace retention"
)

_WORKSPACES = """
select workspace_id, message_retention_days from workspace_settings
where message_retention_days is not null order by workspace_id
"""
# Through messages_workspace_sent / messages_workspace_created; tombstones are skipped.
_EXPIRED = """
select id from messages
where workspace_id = $1 and deleted_at is null
  and (sent_at < $2 or (sent_at is null and created_at < $2))
order by id limit $3
"""
_SET = """
insert into workspace_settings (workspace_id, message_retention_days) values ($1, $2)
on conflict (workspace_id) do update set message_retention_days = excluded.message_retention_days, updated_at = now()
returning workspace_id, message_retention_days, updated_at
"""
_GET = "select workspace_id, message_retention_days, updated_at from workspace_settings where workspace_id = $1"


@dataclass(frozen=True, slots=True)
class Retention:
    workspace_id: str
    message_retention_days: int | None
    updated_at: datetime | None = None


@dataclass(slots=True)
class RetentionReport:
    workspaces: int = 0
    tombstoned: dict[str, int] = field(default_factory=dict)


def _retention(row: Any, workspace_id: str) -> Retention:
    if row is None:
        return Retention(workspace_id, None)
    return Retention(row["workspace_id"], row["message_retention_days"], row["updated_at"])


async def get_retention(pool: asyncpg.Pool, workspace_id: str) -> Retention:
    return _retention(await pool.fetchrow(_GET, workspace_id), workspace_id)


async def set_retention(pool: asyncpg.Pool, workspace_id: str, days: int | None) -> Retention:
    return _retention(await pool.fetchrow(_SET, workspace_id, days), workspace_id)


async def apply_retention(
    pool: asyncpg.Pool, now: datetime, batch_size: int = 500, stopping: asyncio.Event | None = None
) -> RetentionReport:
    """Tombstone every expired message of every workspace with a retention, one batch per
    transaction (a crash loses at most the batch in flight, which the next run does). Idempotent:
    a tombstone is never selected again; two replicas running it at once erase each message once
    (``tombstone`` re-checks under the row lock)."""
    report = RetentionReport()
    for row in await pool.fetch(_WORKSPACES):
        workspace_id, days = row["workspace_id"], row["message_retention_days"]
        report.workspaces += 1
        cutoff = now - timedelta(days=days)
        while stopping is None or not stopping.is_set():
            async with pool.acquire() as conn:
                ids = [r["id"] for r in await conn.fetch(_EXPIRED, workspace_id, cutoff, batch_size)]
                events = await tombstone(conn, ids, "retention", now) if ids else []
            if events:
                report.tombstoned[workspace_id] = report.tombstoned.get(workspace_id, 0) + len(events)
                TOMBSTONED.inc(len(events))
            # Done, or no progress: a message observed after ``now`` (a gateway's clock ahead of
            # this one) is left by tombstone() and would be selected again and again.
            if len(ids) < batch_size or not events:
                break
        if report.tombstoned.get(workspace_id):
            log.info(
                "retention applied",
                workspace_id=workspace_id,
                retention_days=days,
                tombstoned=report.tombstoned[workspace_id],
            )
    return report


def retention_job(settings: Settings, clock: Callable[[], datetime]) -> Callable[[ServiceRuntime], Awaitable[None]]:
    """The periodic worker's job (``runtime.add_worker(..., periodic(job, seconds))``)."""

    async def job(runtime: ServiceRuntime) -> None:
        await apply_retention(runtime.db, clock(), settings.retention_batch_size, runtime.stopping)

    return job


async def run_retention(settings: Settings, now: datetime) -> dict[str, Any]:
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=2)
    try:
        report = await apply_retention(pool, now, settings.retention_batch_size)
    finally:
        await pool.close()
    return {"workspaces": report.workspaces, "tombstoned": report.tombstoned}
