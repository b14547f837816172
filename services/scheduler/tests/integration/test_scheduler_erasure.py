"""The scheduler's part of an erasure (issue #19), through its real worker on real PostgreSQL and
NATS: of two integrations of one workspace, the erased one's runs and state go (and its queued
request leaves the SYNC work queue), the other's stay; ``ErasureFinished`` reports the counts, and
the same request again reports the same counts and touches nothing else. An unreadable request is
dead-lettered."""

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
from scheduler_kit import FakeClock, StandInWorker, add_integration, drain_events, runs_of

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
from callstream.scheduler import Scheduler
from callstream.scheduler._erasures import consume_erasures

WAIT_SECONDS = 10.0


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
