"""Cancelling a run (``POST /v1/integrations/{id}/syncs/{run_id}/cancel``).

The run row says ``cancelled`` at once, in one transaction with its integration's state (back to
what its last settled run left: success, error or pending). Then the scheduler withdraws the run's
``SyncRequested`` from the SYNC work queue (``Scheduler.cancel``): a queued request no worker took
is never delivered; a pull worker that holds it finds its request gone at its next page boundary
and stops there, its checkpoint kept (the gateway's ``RunWithdrawn``). A page in flight may still
report its progress afterwards: the row's counters take it, its status stays ``cancelled``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

ACTIVE = ("queued", "running")


class RunNotFound(Exception):
    """No such run of that integration."""


class RunNotActive(Exception):
    """The run has finished already (its status says how)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


async def cancel_run(pool: asyncpg.Pool, integration_id: uuid.UUID, run_id: uuid.UUID, now: datetime) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        run = await conn.fetchrow(
            "select status from sync_runs where id = $1 and integration_id = $2 for update", run_id, integration_id
        )
        if run is None:
            raise RunNotFound
        if run["status"] not in ACTIVE:
            raise RunNotActive(run["status"])
        cancelled = await conn.fetchrow(
            """update sync_runs set status = 'cancelled', finished_at = $2, resume_after = null, waiting_for = null
               where id = $1 returning *""",
            run_id,
            now,
        )
        assert cancelled is not None  # locked above
        # What it published is synced all the same; the watermark stays (its window is not complete).
        await conn.execute(
            """update sync_state
               set status = case when consecutive_failures > 0 then 'error'
                                 when last_synced_at is not null then 'success' else 'pending' end,
                   items_synced_total = items_synced_total + $3, items_synced_last_run = $3, updated_at = $4
               where integration_id = $1 and last_run_id = $2 and status = 'syncing'""",
            integration_id,
            run_id,
            cancelled["calls_published"],
            now,
        )
        return cancelled
