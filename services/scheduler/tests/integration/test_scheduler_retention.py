"""Run history older than the retention is deleted by a daily job that is itself on record."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import asyncpg
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, add_integration, make_scheduler

from callstream.scheduler import Scheduler


async def _run_at(pool: asyncpg.Pool, integration_id: uuid.UUID, created_at: datetime, status: str) -> uuid.UUID:
    run_id = uuid.uuid4()
    await pool.execute(
        """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at)
           values ($1, $2, 'ws-1', 'fathom', 'incremental', 'schedule', $3, $4)""",
        run_id,
        integration_id,
        status,
        created_at,
    )
    return run_id


async def test_daily_retention_deletes_old_finished_runs_once_a_day(
    scheduler: Scheduler, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    now = clock.now()
    old_ok = await add_integration(pool)
    active = await add_integration(pool)
    keep = [
        await _run_at(pool, old_ok, now - timedelta(days=29), "success"),
        await _run_at(pool, old_ok, now - timedelta(hours=1), "error"),
        # an active run is never deleted, however old (stale detection settles it first)
        await _run_at(pool, active, now - timedelta(days=40), "running"),
    ]
    await _run_at(pool, old_ok, now - timedelta(days=40), "success")
    await _run_at(pool, old_ok, now - timedelta(days=31), "error")

    first = await scheduler.store.run_retention(now)
    assert first is not None
    assert first["deleted_runs"] == 2
    assert sorted(await pool.fetchval("select array_agg(id) from sync_runs")) == sorted(keep)
    assert await scheduler.store.run_retention(now + timedelta(hours=5)) is None  # same day: done already

    job = await pool.fetchrow("select * from scheduler_jobs")
    assert (job["job"], job["status"], job["attempts"]) == ("retention", "success", 1)
    assert job["period"] == now.date()
    assert job["detail"]["deleted_runs"] == 2

    next_day = now + timedelta(days=1)
    assert (await scheduler.store.run_retention(next_day)) == {
        "deleted_runs": 0,
        "cutoff": (next_day - timedelta(days=30)).isoformat(),
    }
    assert await pool.fetchval("select count(*) from scheduler_jobs where status = 'success'") == 2


async def test_one_replica_runs_the_job_and_a_dead_replicas_job_is_taken_over(
    pool: asyncpg.Pool, clock: FakeClock, js: JetStreamContext
) -> None:
    replicas = [make_scheduler(pool, clock, js) for _ in range(4)]
    results = await asyncio.gather(*(r.store.run_retention(clock.now()) for r in replicas))
    assert sum(result is not None for result in results) == 1

    # A replica died while the job ran: after an hour another takes it over, and it is counted.
    tomorrow = clock.advance(days=1)
    await pool.execute(
        "insert into scheduler_jobs (job, period, status, started_at) values ('retention', $1, 'running', $2)",
        tomorrow.date(),
        tomorrow,
    )
    assert await replicas[0].store.run_retention(tomorrow + timedelta(minutes=30)) is None
    assert await replicas[1].store.run_retention(tomorrow + timedelta(minutes=61)) is not None
    job = await pool.fetchrow("select * from scheduler_jobs where period = $1", tomorrow.date())
    assert (job["status"], job["attempts"]) == ("success", 2)


async def test_the_due_loop_runs_retention_on_its_first_tick_of_each_day(
    scheduler: Scheduler, clock: FakeClock
) -> None:
    assert (await scheduler.tick()).retention is not None
    clock.advance(hours=1)
    assert (await scheduler.tick()).retention is None
    clock.advance(days=1)
    assert (await scheduler.tick()).retention is not None
