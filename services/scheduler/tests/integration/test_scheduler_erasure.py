"""The scheduler's part of an erasure (issue #19), through its real worker on real PostgreSQL and
NATS: of two integrations of one workspace, the erased one's runs and state go (and its queued
request leaves the SYNC work queue), the other's stay; ``ErasureFinished`` reports the counts, and
the same request again reports the same counts and touches nothing else. An unreadable request is
dead-lettered. An erased integration (the gateway's status 'erased') is never scheduled again and
the admin API answers 404 ``integration_erased`` for it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from scheduler_kit import FakeClock, StandInWorker, add_integration, drain_events, runs_of, serve

from callstream.contracts import (
    ERASURES_REQUESTED,
    SCHEDULER_ERASURES_CONSUMER,
    SYNC,
    DeadLetter,
    ErasureFinished,
    ErasureRequested,
    dlq_subject,
    erasures_finished_subject,
)
from callstream.scheduler import Scheduler, Settings, build_app
from callstream.scheduler._erasures import consume_erasures, erase

WAIT_SECONDS = 10.0
TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def _erasure_worker(pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(consume_erasures(pool, js, clock, stopping))
    try:
        yield
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=WAIT_SECONDS)


async def _request(js: JetStreamContext, request: ErasureRequested, msg_id: str) -> None:
    await js.publish(ERASURES_REQUESTED, msgspec.json.encode(request), headers={"Nats-Msg-Id": msg_id})


async def _rows(pool: asyncpg.Pool, integration_id: uuid.UUID) -> dict[str, Any]:
    return {
        "runs": [dict(r) for r in await runs_of(pool, integration_id)],
        "state": dict(await pool.fetchrow("select * from sync_state where integration_id = $1", integration_id) or {}),
    }


async def _queued_seq(pool: asyncpg.Pool, integration_id: uuid.UUID) -> int:
    seq = await pool.fetchval(
        "select request_seq from sync_runs where integration_id = $1 and status = 'queued'", integration_id
    )
    assert seq is not None
    return int(seq)


async def test_erasure_takes_one_integrations_runs_and_state_and_reports_the_same_counts_again(
    pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock, scheduler: Scheduler, nats_url: str
) -> None:
    erased = await add_integration(pool, "fathom", workspace_id="ws-erase")
    kept = await add_integration(pool, "gong", workspace_id="ws-erase")
    # A run of each done, then a second of each queued and published (its request in SYNC).
    await scheduler.tick()
    await StandInWorker(js, clock).work()
    await drain_events(scheduler, js)
    clock.advance(hours=1, minutes=1)
    await scheduler.tick()
    erased_seq, kept_seq = await _queued_seq(pool, erased), await _queued_seq(pool, kept)
    kept_before = await _rows(pool, kept)
    assert len((await _rows(pool, erased))["runs"]) == 2
    assert len(kept_before["runs"]) == 2

    request = ErasureRequested(
        erasure_id=str(uuid.uuid4()),
        scope="integration",
        workspace_id="ws-erase",
        integration_ids=[str(erased)],
        requested_at=clock.now(),
    )
    nc = await nats.connect(nats_url)  # a plain subscriber sees every report, repeats included
    try:
        reports = await nc.subscribe(erasures_finished_subject("scheduler"))
        async with _erasure_worker(pool, js, clock):
            await _request(js, request, "first")
            first = await reports.next_msg(timeout=WAIT_SECONDS)
            finished = msgspec.json.decode(first.data, type=ErasureFinished)
            assert finished.erasure_id == request.erasure_id
            assert finished.service == "scheduler"
            assert finished.counts == {"sync_runs": 2, "sync_state": 1}
            assert first.headers
            assert first.headers["Nats-Msg-Id"] == f"{request.erasure_id}:scheduler"

            assert await _rows(pool, erased) == {"runs": [], "state": {}}
            assert await _rows(pool, kept) == kept_before
            with pytest.raises(NotFoundError):  # no pull worker will start the erased run
                await js.get_msg(SYNC, erased_seq)
            assert (await js.get_msg(SYNC, kept_seq)).data

            # The same request again (a redelivery after a crash, or asked twice): the same report.
            clock.advance(minutes=5)
            await _request(js, request, "again")
            again = await reports.next_msg(timeout=WAIT_SECONDS)
            assert again.data == first.data
            assert await _rows(pool, kept) == kept_before
            assert await _rows(pool, erased) == {"runs": [], "state": {}}
            assert await pool.fetchval("select count(*) from scheduler_erasures") == 1
        # Stored once in ERASURES (the report's Nats-Msg-Id), and every request acknowledged.
        stored = await js.get_last_msg("ERASURES", erasures_finished_subject("scheduler"))
        assert stored.data == first.data
        info = await js.consumer_info(SCHEDULER_ERASURES_CONSUMER.stream, SCHEDULER_ERASURES_CONSUMER.durable)
        assert info.num_pending == 0
        assert info.num_ack_pending == 0
    finally:
        await nc.close()


async def test_an_unreadable_erasure_request_is_dead_lettered(
    pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock, nats_url: str
) -> None:
    kept = await add_integration(pool, "fathom", workspace_id="ws-erase", parked_until=clock.now())
    nc = await nats.connect(nats_url)
    try:
        letters = await nc.subscribe(dlq_subject(SCHEDULER_ERASURES_CONSUMER.durable))
        async with _erasure_worker(pool, js, clock):
            await js.publish(ERASURES_REQUESTED, b'{"erasure_id": 7}', headers={"Nats-Msg-Id": "bad"})
            letter = msgspec.json.decode((await letters.next_msg(timeout=WAIT_SECONDS)).data, type=DeadLetter)
        assert letter.subject == ERASURES_REQUESTED
        assert letter.error.startswith("Unprocessable")
        assert await pool.fetchval("select count(*) from sync_state where integration_id = $1", kept) == 1
        assert await pool.fetchval("select count(*) from scheduler_erasures") == 0
    finally:
        await nc.close()


async def _eventually(check: Any, timeout: float = WAIT_SECONDS) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_an_erased_integration_is_never_scheduled_again_and_the_api_says_so(
    database_url: str,
    nats_url: str,
    js: JetStreamContext,
    pool: asyncpg.Pool,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", "0.1")
    erased = await add_integration(pool, "fathom", workspace_id="ws-erase")
    kept = await add_integration(pool, "gong", workspace_id="ws-erase")
    worker = StandInWorker(js, clock)
    app = build_app(Settings(), clock=clock)  # type: ignore[call-arg]
    async with serve(app) as client:

        async def both_synced() -> bool:
            await worker.work()
            states = await pool.fetch("select status from sync_state where status = 'success'")
            return len(states) == 2

        await _eventually(both_synced)
        # What the gateway does: the row says 'erased' (its secrets gone), then the request.
        await pool.execute("update integrations set status = 'erased', updated_at = now() where id = $1", erased)
        await _request(
            js,
            ErasureRequested(
                erasure_id=str(uuid.uuid4()),
                scope="integration",
                workspace_id="ws-erase",
                integration_ids=[str(erased)],
                requested_at=clock.now(),
            ),
            "erase",
        )

        async def erasure_done() -> bool:
            return bool(await pool.fetchval("select count(*) from scheduler_erasures"))

        await _eventually(erasure_done)
        # Days later, past every cadence and reconciliation: the kept one runs again, the erased never.
        kept_runs = len(await runs_of(pool, kept))
        clock.advance(days=8)

        async def kept_ran_again() -> bool:
            return len(await runs_of(pool, kept)) > kept_runs

        await _eventually(kept_ran_again)
        await asyncio.sleep(0.3)  # a few more ticks of the loop
        assert await pool.fetchval("select count(*) from sync_state where integration_id = $1", erased) == 0
        assert await runs_of(pool, erased) == []

        for method, path, body in [
            ("POST", f"/v1/integrations/{erased}/syncs", {"mode": "latest", "limit": 5}),
            ("GET", f"/v1/integrations/{erased}/sync-state", None),
            ("GET", f"/v1/integrations/{erased}/syncs", None),
            ("GET", f"/v1/integrations/{erased}/health", None),
        ]:
            response = await client.request(method, path, json=body, headers=AUTH)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"] == "integration_erased", path
        assert await runs_of(pool, erased) == []
        listed = (await client.get("/v1/sync-state", params={"workspace_id": "ws-erase"}, headers=AUTH)).json()
        assert [s["integration_id"] for s in listed] == [str(kept)]
        assert (await client.get(f"/v1/integrations/{kept}/sync-state", headers=AUTH)).status_code == 200


async def test_a_workspace_erasure_also_takes_rows_of_integrations_no_longer_listed(
    pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock, nats_url: str
) -> None:
    listed = await add_integration(pool, "fathom", workspace_id="ws-gone", parked_until=clock.now())
    unlisted = await add_integration(pool, "gong", workspace_id="ws-gone", parked_until=clock.now())
    other = await add_integration(pool, "fathom", workspace_id="ws-other", parked_until=clock.now())
    request = ErasureRequested(
        erasure_id=str(uuid.uuid4()),
        scope="workspace",
        workspace_id="ws-gone",
        integration_ids=[str(listed)],
        requested_at=clock.now(),
    )
    nc = await nats.connect(nats_url)
    try:
        reports = await nc.subscribe(erasures_finished_subject("scheduler"))
        async with _erasure_worker(pool, js, clock):
            await _request(js, request, "workspace")
            finished = msgspec.json.decode((await reports.next_msg(timeout=WAIT_SECONDS)).data, type=ErasureFinished)
        assert finished.counts == {"sync_runs": 0, "sync_state": 2}
        for gone in (listed, unlisted):
            assert await pool.fetchval("select count(*) from sync_state where integration_id = $1", gone) == 0
        assert await pool.fetchval("select count(*) from sync_state where integration_id = $1", other) == 1
    finally:
        await nc.close()


async def test_a_run_being_created_while_the_erasure_runs_is_erased_too(pool: asyncpg.Pool, clock: FakeClock) -> None:
    """The due loop creates a run while it holds the state's row lock (``claim_due``); an erasure
    at that moment waits for it and takes the run as well (it left the run behind before)."""
    erased = await add_integration(pool, "fathom", workspace_id="ws-erase", parked_until=clock.now())
    request = ErasureRequested(
        erasure_id=str(uuid.uuid4()),
        scope="integration",
        workspace_id="ws-erase",
        integration_ids=[str(erased)],
        requested_at=clock.now(),
    )
    async with pool.acquire() as loop_conn:
        claim = loop_conn.transaction()
        await claim.start()
        await loop_conn.execute("select 1 from sync_state where integration_id = $1 for update", erased)
        erasing = asyncio.create_task(erase(pool, request, clock.now()))

        async def erasure_waits() -> bool:
            return bool(await pool.fetchval("select exists (select 1 from pg_locks where not granted)"))

        await _eventually(erasure_waits)
        await loop_conn.execute(
            """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at)
               values ($1, $2, 'ws-erase', 'fathom', 'incremental', 'schedule', 'queued', $3)""",
            uuid.uuid4(),
            erased,
            clock.now(),
        )
        await claim.commit()
        done = await asyncio.wait_for(erasing, timeout=WAIT_SECONDS)
    assert done.counts == {"sync_runs": 1, "sync_state": 1}
    assert await runs_of(pool, erased) == []
