"""The due loop on real PostgreSQL and JetStream with a simulated clock: first run, cadence,
windows, watermark, backoff, stale runs, reauth, reconciliation, and the one-active-run constraint."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext
from scheduler_kit import (
    FakeClock,
    StandInWorker,
    add_integration,
    drain_events,
    make_scheduler,
    runs_of,
    state_of,
)

from callstream.contracts import SYNC, SyncRequested
from callstream.scheduler import Policy, Scheduler

DELAY = timedelta(minutes=5)


async def test_new_integration_runs_on_the_next_tick_and_is_published(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong")
    report = await scheduler.tick()
    assert report.new_integrations == 1
    assert len(report.created_runs) == 1
    assert report.published_runs == 1
    [run] = await runs_of(pool, integration_id)
    assert run["status"] == "queued"
    assert run["published_at"] == clock.now()

    msg = await js.get_last_msg(SYNC, "sync.requested.gong")
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == str(run["id"])
    assert msg.data is not None
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    assert request.run_id == str(run["id"])
    assert request.integration_id == str(integration_id)
    assert request.mode == "incremental"
    assert request.window.start == clock.now() - timedelta(days=14)
    assert request.window.end == clock.now() - DELAY

    state = await state_of(pool, integration_id)
    assert state["status"] == "syncing"
    assert state["next_due_at"] == clock.now() + timedelta(hours=1)


async def test_disabled_and_reauth_integrations_are_never_scheduled(
    scheduler: Scheduler, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    disabled = await add_integration(pool, status="disabled")
    reauth = await add_integration(pool, status="reauth_required")
    for _ in range(5):
        await scheduler.tick()
        clock.advance(hours=1)
    assert await runs_of(pool, disabled) == []
    assert await runs_of(pool, reauth) == []


async def test_cadence_hourly_by_default_and_per_integration(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    hourly = await add_integration(pool, "fathom")
    quarterly = await add_integration(pool, "fathom", settings={"cadence_seconds": 900})
    worker = StandInWorker(js, clock)
    start = clock.now()
    for _ in range(24):  # two hours in five-minute steps
        await scheduler.tick()
        await worker.work()
        await drain_events(scheduler, js)
        clock.advance(minutes=5)
    hourly_starts = [r["created_at"] - start for r in await runs_of(pool, hourly)]
    quarterly_starts = [r["created_at"] - start for r in await runs_of(pool, quarterly)]
    assert hourly_starts == [timedelta(minutes=m) for m in (0, 60)]
    assert quarterly_starts == [timedelta(minutes=m) for m in range(0, 120, 15)]


async def test_watermark_moves_only_on_success_and_drives_the_next_window(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong")
    outcomes = iter(["success", "error", "success"])
    worker = StandInWorker(js, clock, outcome=lambda _: next(outcomes))

    await scheduler.tick()
    [first] = await worker.work()
    await drain_events(scheduler, js)
    state = await state_of(pool, integration_id)
    assert state["status"] == "success"
    assert state["watermark"] == first.window.end
    assert state["items_synced_total"] == 6
    watermark = state["watermark"]

    clock.advance(hours=1)
    await scheduler.tick()
    [second] = await worker.work()
    assert second.window.start == watermark - timedelta(days=3)  # Gong looks back three days
    assert second.window.end == clock.now() - DELAY
    await drain_events(scheduler, js)
    state = await state_of(pool, integration_id)
    assert state["status"] == "error"
    assert state["watermark"] == watermark  # a failed run does not move it
    assert state["last_error"] == "provider said error"

    clock.advance(minutes=1)  # first retry after one minute
    await scheduler.tick()
    [third] = await worker.work()
    assert third.window.start == watermark - timedelta(days=3)
    await drain_events(scheduler, js)
    state = await state_of(pool, integration_id)
    assert state["watermark"] == third.window.end
    assert state["consecutive_failures"] == 0
    assert state["items_synced_total"] == 18  # failed runs' published calls count too
    assert state["items_synced_last_run"] == 6


async def test_repeated_failures_back_off_up_to_the_cadence(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom")
    worker = StandInWorker(js, clock, outcome=lambda _: "error")
    start = clock.now()
    for _ in range(5 * 60):  # five hours in one-minute steps
        await scheduler.tick()
        await worker.work()
        await drain_events(scheduler, js)
        clock.advance(minutes=1)
    starts = [r["created_at"] for r in await runs_of(pool, integration_id)]
    minutes = [int((s - start).total_seconds() // 60) for s in starts]
    # Retries 1, 2, 4, 8, 16 minutes after each failure; the next (32) would pass the hourly
    # run at 60, which comes first; from then on the backoff is capped at the cadence.
    assert minutes == [0, 1, 3, 7, 15, 31, 60, 120, 180, 240]
    state = await state_of(pool, integration_id)
    assert state["consecutive_failures"] == len(starts)
    assert state["watermark"] is None


async def test_run_without_progress_is_failed_and_retried(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom")
    worker = StandInWorker(js, clock)
    await scheduler.tick()
    [msg] = await worker.take()
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    await worker.progress(request, 1)
    await drain_events(scheduler, js)
    [run] = await runs_of(pool, integration_id)
    assert run["status"] == "running"
    assert run["pages"] == 1

    clock.advance(minutes=9)  # quiet, but not for long enough
    assert (await scheduler.tick()).stale_runs == 0
    clock.advance(minutes=2)  # eleven minutes since the last progress: the worker is gone
    report = await scheduler.tick()
    assert report.stale_runs == 1
    [run] = await runs_of(pool, integration_id)
    assert run["status"] == "error"
    assert "no progress" in run["error"]
    state = await state_of(pool, integration_id)
    assert state["status"] == "error"
    assert state["next_due_at"] == clock.now() + timedelta(minutes=1)

    # The dead worker's late report changes nothing; the retry runs and succeeds.
    await worker.finish(request, "success")
    assert await drain_events(scheduler, js) == ["unchanged"]
    assert (await state_of(pool, integration_id))["watermark"] is None
    clock.advance(minutes=1)
    retry_report = await scheduler.tick()
    assert len(retry_report.created_runs) == 1
    [retry] = await worker.work()
    assert retry.window.start == clock.now() - timedelta(days=14)  # still no watermark: a first window
    await drain_events(scheduler, js)
    state = await state_of(pool, integration_id)
    assert state["status"] == "success"
    assert state["watermark"] == retry.window.end


async def test_a_run_waiting_on_a_retry_after_is_not_stale_until_its_wait_is_over(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong")
    worker = StandInWorker(js, clock)
    await scheduler.tick()
    [msg] = await worker.take()
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    await worker.progress(request, 1)
    clock.advance(minutes=1)
    await worker.wait(request, 1, seconds=3 * 3600, reason="Gong daily quota spent")
    await drain_events(scheduler, js)
    [run] = await runs_of(pool, integration_id)
    assert run["status"] == "running"
    assert run["waiting_for"] == "Gong daily quota spent"
    assert run["resume_after"] == clock.now() + timedelta(hours=3)

    clock.advance(hours=3, minutes=9)  # long past the stale limit, but it said it would wait
    assert (await scheduler.tick()).stale_runs == 0
    await worker.progress(request, 2)  # it goes on: no longer waiting
    await drain_events(scheduler, js)
    [run] = await runs_of(pool, integration_id)
    assert (run["pages"], run["resume_after"], run["waiting_for"]) == (2, None, None)
    clock.advance(minutes=11)  # and a worker that vanishes after that is found out as usual
    assert (await scheduler.tick()).stale_runs == 1
    run = (await runs_of(pool, integration_id))[0]  # (Gong's weekly reconciliation may follow at once)
    assert run["status"] == "error"


async def test_a_waiting_run_that_never_comes_back_is_stale_after_its_wait(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong")
    worker = StandInWorker(js, clock)
    await scheduler.tick()
    [msg] = await worker.take()
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    await worker.wait(request, 0, seconds=1800, reason="Retry-After")
    await drain_events(scheduler, js)
    clock.advance(minutes=39)
    assert (await scheduler.tick()).stale_runs == 0
    clock.advance(minutes=2)  # 30 minutes of waiting plus the 10-minute limit have passed
    assert (await scheduler.tick()).stale_runs == 1
    run = (await runs_of(pool, integration_id))[0]
    assert run["status"] == "error"


async def test_queued_run_of_a_stale_request_is_withdrawn_from_the_work_queue(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    await add_integration(pool, "fathom")
    await scheduler.tick()
    assert (await js.stream_info(SYNC)).state.messages == 1
    clock.advance(minutes=11)
    report = await scheduler.tick()
    assert report.stale_runs == 1
    # The retry is due one minute later; the stale request no longer waits for a worker.
    assert (await js.stream_info(SYNC)).state.messages == 0


async def test_reauth_required_stops_scheduling_until_reauthorised(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong", updated_at=clock.now() - timedelta(days=1))
    worker = StandInWorker(js, clock, outcome=lambda _: "reauth_required")
    await scheduler.tick()
    await worker.work()
    await drain_events(scheduler, js)
    assert (await state_of(pool, integration_id))["status"] == "reauth_required"
    for _ in range(6):
        clock.advance(hours=1)
        assert (await scheduler.tick()).created_runs == []
    # The gateway re-authorises it (new credentials, updated_at moves).
    await pool.execute("update integrations set updated_at = $2 where id = $1", integration_id, clock.now())
    clock.advance(seconds=5)
    assert len((await scheduler.tick()).created_runs) == 1


async def test_gong_and_fathom_are_reconciled_weekly_over_fourteen_days(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    gong = await add_integration(pool, "gong")
    fathom = await add_integration(pool, "fathom")
    worker = StandInWorker(js, clock)
    for _ in range(8 * 24 * 4):  # eight days in fifteen-minute steps
        await scheduler.tick()
        await worker.work()
        await drain_events(scheduler, js)
        clock.advance(minutes=15)
    for integration_id in (gong, fathom):
        reconciles = [r for r in await runs_of(pool, integration_id) if r["trigger"] == "reconcile"]
        assert len(reconciles) == 1
        [reconcile] = reconciles
        assert reconcile["mode"] == "range"
        assert reconcile["window_end"] - reconcile["window_start"] == timedelta(days=14) - DELAY
        assert reconcile["status"] == "success"
        # Hourly runs went on around it.
        assert len([r for r in await runs_of(pool, integration_id) if r["trigger"] == "schedule"]) == 8 * 24


async def test_fathom_reconciles_on_its_own_period_also_for_states_made_before_it_was(
    pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    """``CALLSTREAM_SCHEDULER_FATHOM_RECONCILE_*`` apart from Gong's; a Fathom state made when only
    Gong was reconciled (no ``next_reconcile_at``) gets its first one a period after the upgrade."""
    days = 86_400
    policy = Policy(
        reconcile_every_seconds={"fathom": 2 * days, "gong": 5 * days},
        reconcile_seconds={"fathom": 3 * days, "gong": 14 * days},
    )
    scheduler = make_scheduler(pool, clock, js, policy)
    fathom = await add_integration(pool, "fathom", parked_until=clock.now())  # a state without a reconcile
    gong = await add_integration(pool, "gong")
    upgraded_at = clock.now()
    worker = StandInWorker(js, clock)
    for _ in range(4 * 24 * 2):  # four days in half-hour steps
        await scheduler.tick()
        await worker.work()
        await drain_events(scheduler, js)
        clock.advance(minutes=30)
    reconciles = [r for r in await runs_of(pool, fathom) if r["trigger"] == "reconcile"]
    # due two days after the upgrade; that tick's hourly run goes first, the reconciliation next
    assert [r["created_at"] for r in reconciles] == [upgraded_at + timedelta(days=2, minutes=30)]
    assert reconciles[0]["window_end"] - reconciles[0]["window_start"] == timedelta(days=3) - DELAY
    assert reconciles[0]["window_end"] == reconciles[0]["created_at"] - DELAY
    assert [r for r in await runs_of(pool, gong) if r["trigger"] == "reconcile"] == []
    assert (await state_of(pool, fathom))["next_reconcile_at"] == upgraded_at + timedelta(days=4, minutes=30)


async def test_the_database_refuses_a_second_active_run(scheduler: Scheduler, pool: asyncpg.Pool) -> None:
    integration_id = await add_integration(pool, "fathom")
    await scheduler.tick()
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at)
               values (gen_random_uuid(), $1, 'ws-1', 'fathom', 'latest', 'manual', 'running', now())""",
            integration_id,
        )
