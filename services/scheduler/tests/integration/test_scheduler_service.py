"""The scheduler app with its real workers (due loop, event consumer) and a stand-in pull worker
that follows the contracts: a new integration syncs within one loop period; a worker killed in
the middle of a run is detected and the run is retried to success; the broker being away delays
requests but loses none."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, StandInWorker, add_integration, make_scheduler, runs_of, serve, state_of

from callstream.contracts import SYNC, SyncRequested
from callstream.devstack import NatsServer
from callstream.runtime import ensure_all
from callstream.scheduler import Settings, SystemClock, build_app

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOP_SECONDS = 0.5


def _settings(monkeypatch: pytest.MonkeyPatch, database_url: str, nats_url: str) -> Settings:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", str(LOOP_SECONDS))
    return Settings()  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def _worker_loop(worker: StandInWorker) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await worker.work()
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_new_integration_syncs_within_one_loop_period(
    database_url: str, nats_url: str, jetstream: JetStreamContext, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(_settings(monkeypatch, database_url, nats_url))  # the system clock
    async with serve(app) as client, _worker_loop(StandInWorker(jetstream, SystemClock())):
        await asyncio.sleep(LOOP_SECONDS)  # the loop is mid-period when the integration appears
        created = datetime.now(UTC)
        integration_id = await add_integration(pool, "fathom")

        async def synced() -> dict[str, Any] | None:
            state = (await client.get(f"/v1/integrations/{integration_id}/sync-state", headers=AUTH)).json()
            return state if state["status"] == "success" else None

        state = await _eventually(synced)
        [run] = await runs_of(pool, integration_id)
        assert run["created_at"] - created <= timedelta(seconds=LOOP_SECONDS + 0.25)
        assert state["items_synced_total"] == 6
        assert state["watermark"] is not None


async def test_a_worker_killed_mid_run_is_detected_and_the_run_retried(
    database_url: str,
    nats_url: str,
    jetstream: JetStreamContext,
    pool: asyncpg.Pool,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = build_app(_settings(monkeypatch, database_url, nats_url), clock=clock)
    integration_id = await add_integration(pool, "gong")
    async with serve(app) as client:
        # A worker takes the request, reports a page, and dies without acknowledging.
        doomed_connection = await nats.connect(nats_url)
        doomed = StandInWorker(doomed_connection.jetstream(), clock)
        [msg] = await _eventually(doomed.take)
        request = msgspec.json.decode(msg.data, type=SyncRequested)
        await doomed.progress(request, 1)
        await doomed_connection.close()

        async def running() -> bool:
            return bool((await runs_of(pool, integration_id))[0]["status"] == "running")

        await _eventually(running)
        clock.advance(minutes=11)  # no progress for longer than the stale limit

        async def failed() -> bool:
            return bool((await runs_of(pool, integration_id))[0]["status"] == "error")

        await _eventually(failed)

        # The abandoned request is withdrawn: no worker picks it up again after its ack wait. The
        # scheduler withdraws it just after it records the failure, so the test waits for it.
        async def withdrawn() -> bool:
            return (await jetstream.stream_info(SYNC)).state.messages == 0

        await _eventually(withdrawn)

        clock.advance(minutes=1)  # the retry is due
        async with _worker_loop(StandInWorker(jetstream, clock)):

            async def recovered() -> bool:
                return bool((await state_of(pool, integration_id))["status"] == "success")

            await _eventually(recovered)
        history = (await client.get(f"/v1/integrations/{integration_id}/syncs", headers=AUTH)).json()["items"]
        assert [(r["status"], r["pages"]) for r in history] == [("success", 2), ("error", 1)]
        assert history[0]["created_at"] > history[1]["finished_at"]


async def test_requests_wait_out_a_broker_outage_and_are_published_once(
    pool: asyncpg.Pool, clock: FakeClock, own_nats: NatsServer
) -> None:
    connection = await nats.connect(own_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = connection.jetstream()
        await ensure_all(js)
        scheduler = make_scheduler(pool, clock, js)
        integration_id = await add_integration(pool, "fathom")
        own_nats.stop()
        report = await scheduler.tick()
        assert (len(report.created_runs), report.published_runs) == (1, 0)
        [run] = await runs_of(pool, integration_id)
        assert (run["status"], run["published_at"]) == ("queued", None)

        own_nats.start()
        await _eventually(lambda: asyncio.sleep(0, connection.is_connected))
        clock.advance(seconds=5)
        assert (await scheduler.tick()).published_runs == 1
        clock.advance(seconds=5)
        assert (await scheduler.tick()).published_runs == 0
        assert (await js.stream_info(SYNC)).state.messages == 1
        [run] = await runs_of(pool, integration_id)
        assert run["published_at"] == clock.now() - timedelta(seconds=5)
    finally:
        await connection.close()
