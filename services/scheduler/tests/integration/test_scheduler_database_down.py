"""PostgreSQL away while sync events arrive: they are nak'ed, come back, and are applied once it returns."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import nats.errors
import pytest
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, StandInWorker, add_integration, drain_events, make_scheduler, runs_of, state_of

from callstream.contracts import GATEWAY_PULL_CONSUMER, SCHEDULER_CONSUMER
from callstream.devstack import EmbeddedPostgres
from callstream.runtime import create_pool, migrate
from callstream.scheduler._events import handle_message


def _migrations(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "migrations"


async def test_events_wait_out_a_database_outage(
    own_postgres: EmbeddedPostgres, js: JetStreamContext, clock: FakeClock
) -> None:
    dsn = own_postgres.dsn()
    await migrate(dsn, "gateway", _migrations("callstream.gateway"))
    await migrate(dsn, "scheduler", _migrations("callstream.scheduler"))
    pool = await create_pool(dsn, max_size=2, timeout=2.0)
    try:
        scheduler = make_scheduler(pool, clock, js)
        integration_id = await add_integration(pool, "gong")
        await scheduler.tick()
        assert len(await StandInWorker(js, clock).work()) == 1

        own_postgres.stop("fast")  # (immediate would drop commits: the test server runs without synchronous commit)
        sub = await js.pull_subscribe_bind(durable=SCHEDULER_CONSUMER.durable, stream=SCHEDULER_CONSUMER.stream)
        try:
            messages = await sub.fetch(10, timeout=2.0)
        except (nats.errors.TimeoutError, TimeoutError):
            pytest.fail("the worker's events did not arrive")
        outcomes = [await handle_message(scheduler, js, m) for m in messages]
        assert outcomes == ["retry"] * 3  # two progress events and the finish, none lost
        await sub.unsubscribe()

        own_postgres.start()
        outcomes = await drain_events(scheduler, js)
        assert outcomes.count("applied") == 3
        [run] = await runs_of(pool, integration_id)
        assert (run["status"], run["pages"], run["calls_published"]) == ("success", 2, 6)
        assert (await state_of(pool, integration_id))["items_synced_total"] == 6
    finally:
        await pool.close()


async def test_the_running_event_consumer_loses_no_event_in_a_long_outage(
    own_postgres: EmbeddedPostgres, js: JetStreamContext, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's own worker (not a test loop) while PostgreSQL is away for longer than the
    old consumer's ten deliveries 2 s apart: every event is applied once it returns. (A
    five-minute outage behaves the same: the consumer waits for the database before fetching
    again, so an outage of any length costs each event one delivery.)"""
    from scheduler_kit import serve

    from callstream.scheduler import Settings, SystemClock, build_app

    dsn = own_postgres.dsn()
    await migrate(dsn, "gateway", _migrations("callstream.gateway"))
    await migrate(dsn, "scheduler", _migrations("callstream.scheduler"))
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", dsn)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", "admin-token-for-tests-0123456789")
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", "0.5")
    pool = await create_pool(dsn, max_size=2, timeout=2.0)
    app = build_app(Settings())  # type: ignore[call-arg]
    try:
        async with serve(app):
            integration_id = await add_integration(pool, "gong")
            worker = StandInWorker(js, SystemClock())
            deadline = asyncio.get_running_loop().time() + 15
            while (
                await js.consumer_info(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
            ).num_pending == 0:
                assert asyncio.get_running_loop().time() < deadline, "no sync request came"
                await asyncio.sleep(0.1)
            own_postgres.stop("fast")
            assert len(await worker.work()) == 1  # its events meet no database
            await asyncio.sleep(30)
            own_postgres.start()
            await pool.expire_connections()

            async def finished() -> bool:
                try:
                    runs = await runs_of(pool, integration_id)
                except Exception:  # the pool reconnecting
                    return False
                return bool(runs) and runs[0]["status"] == "success"

            deadline = asyncio.get_running_loop().time() + 30
            while not await finished():
                assert asyncio.get_running_loop().time() < deadline, "the run's events were lost"
                await asyncio.sleep(0.5)
            [run] = await runs_of(pool, integration_id)
            assert (run["pages"], run["calls_published"]) == (2, 6)
    finally:
        await pool.close()
