"""Where syncing stands, as gauges read from the scheduler's own tables every few seconds by the
``run-gauges`` worker (never per run or per event), plus its consumer's lag and dead letters.

Per-integration series exist only for integrations in trouble (failing, or with a run that has
not moved), so their number follows the incidents, not the number of integrations. Every replica
reports the same numbers: dashboards and alerts take ``max``.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from callstream.contracts import SCHEDULER_CONSUMER, dlq_subject
from callstream.runtime import ServiceRuntime, SnapshotGauge, backlog_worker, get_logger, periodic

from ._clock import Clock

log = get_logger(__name__)

GAUGE_SECONDS = 15.0
QUERY_TIMEOUT_SECONDS = 5.0

INTEGRATIONS = SnapshotGauge(
    "callstream_scheduler_integrations", "Integrations by provider and sync status (sync_state)", ["provider", "status"]
)
ACTIVE_RUNS = SnapshotGauge(
    "callstream_scheduler_active_runs", "Runs queued or running, by provider and status", ["provider", "status"]
)
FINISHED_RUNS = SnapshotGauge(
    "callstream_scheduler_runs_finished_last_hour",
    "Runs that finished in the last hour, by provider and outcome (success, error, reauth_required)",
    ["provider", "status"],
)
FAILING = SnapshotGauge(
    "callstream_scheduler_integration_consecutive_failures",
    "Failed runs in a row, for each integration whose last run failed",
    ["integration_id", "workspace_id", "provider"],
)
IDLE_RUNS = SnapshotGauge(
    "callstream_scheduler_run_idle_seconds",
    "For each queued or running run: seconds since it last moved (created, started, progress, or the"
    " end of a wait it announced: Retry-After, a spent quota)",
    ["integration_id", "workspace_id", "provider", "status"],
)

_BY_STATUS = "select provider, status, count(*) as n from sync_state group by 1, 2"
_ACTIVE = (
    "select integration_id, workspace_id, provider, status,"
    " extract(epoch from $1::timestamptz - greatest(coalesce(last_progress_at, started_at, created_at),"
    " coalesce(resume_after, '-infinity')))::float8 as idle"
    " from sync_runs where status in ('queued', 'running')"
)
_FINISHED = (
    "select provider, status, count(*) as n from sync_runs"
    " where created_at > $1::timestamptz - interval '1 day' and finished_at > $1::timestamptz - interval '1 hour'"
    " and status not in ('queued', 'running') group by 1, 2"
)
_FAILING = (
    "select integration_id, workspace_id, provider, consecutive_failures as n from sync_state"
    " where consecutive_failures > 0"
)
# The database away or not migrated yet: readiness says so; the gauges keep their last read.
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def read_runs(pool: asyncpg.Pool, now: datetime) -> None:
    async with pool.acquire(timeout=QUERY_TIMEOUT_SECONDS) as conn:
        by_status = await conn.fetch(_BY_STATUS, timeout=QUERY_TIMEOUT_SECONDS)
        active = await conn.fetch(_ACTIVE, now, timeout=QUERY_TIMEOUT_SECONDS)
        finished = await conn.fetch(_FINISHED, now, timeout=QUERY_TIMEOUT_SECONDS)
        failing = await conn.fetch(_FAILING, timeout=QUERY_TIMEOUT_SECONDS)
    INTEGRATIONS.replace({(r["provider"], r["status"]): r["n"] for r in by_status})
    counts: dict[tuple[str, ...], float] = {}
    for r in active:
        counts[(r["provider"], r["status"])] = counts.get((r["provider"], r["status"]), 0) + 1
    ACTIVE_RUNS.replace(counts)
    IDLE_RUNS.replace(
        {(str(r["integration_id"]), r["workspace_id"], r["provider"], r["status"]): max(0.0, r["idle"]) for r in active}
    )
    FINISHED_RUNS.replace({(r["provider"], r["status"]): r["n"] for r in finished})
    FAILING.replace({(str(r["integration_id"]), r["workspace_id"], r["provider"]): r["n"] for r in failing})


def add_gauge_workers(runtime: ServiceRuntime, clock: Clock) -> None:
    async def collect(rt: ServiceRuntime) -> None:
        try:
            await read_runs(rt.db, clock.now())
        except _TRANSIENT as exc:
            log.debug("run gauges not read this time", error=type(exc).__name__)

    runtime.add_worker(
        "backlog", backlog_worker((SCHEDULER_CONSUMER,), (dlq_subject(SCHEDULER_CONSUMER.durable),)), critical=False
    )
    runtime.add_worker("run-gauges", periodic(collect, GAUGE_SECONDS), critical=False)
