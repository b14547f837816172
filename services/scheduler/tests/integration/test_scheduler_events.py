"""Consuming sync.events.*: redelivery and reordering change nothing; unreadable events go to the DLQ."""

from __future__ import annotations

import asyncpg
import msgspec
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, StandInWorker, add_integration, drain_events, runs_of, state_of

from callstream.contracts import DLQ, SyncRequested, dlq_subject, sync_events_subject
from callstream.contracts import DeadLetter as DeadLetterMsg
from callstream.scheduler import Scheduler


async def _one_request(scheduler: Scheduler, worker: StandInWorker) -> tuple[SyncRequested, object]:
    await scheduler.tick()
    [msg] = await worker.take()
    return msgspec.json.decode(msg.data, type=SyncRequested), msg


async def test_redelivered_events_change_nothing(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong")
    worker = StandInWorker(js, clock, pages=3)
    request, _ = await _one_request(scheduler, worker)
    await worker.progress(request, 1)
    await worker.progress(request, 2)
    assert await drain_events(scheduler, js) == ["applied", "applied"]
    [run] = await runs_of(pool, integration_id)
    assert (run["status"], run["pages"], run["calls_published"], run["checkpoint"]) == ("running", 2, 6, "cursor-2")

    # The same progress again (a redelivery after a lost ack) and an older one arriving late.
    sent_at = clock.now()
    clock.advance(seconds=30)
    for page in (2, 1):
        event = msgspec.json.encode(
            {
                "kind": "progress",
                "run_id": request.run_id,
                "integration_id": request.integration_id,
                "page": page,
                "calls_published": page * 3,
                "checkpoint": f"cursor-{page}",
                "at": sent_at.isoformat(),
            }
        )
        await js.publish(sync_events_subject("gong"), event)
    await drain_events(scheduler, js)
    [again] = await runs_of(pool, integration_id)
    assert dict(again) == dict(run)

    await worker.finish(request, "success")
    assert await drain_events(scheduler, js) == ["applied"]
    state = dict(await state_of(pool, integration_id))
    [finished] = await runs_of(pool, integration_id)
    assert finished["status"] == "success"
    assert state["items_synced_total"] == 9

    # A second copy of SyncFinished (published without the dedup header) and a late progress.
    fin = await js.get_last_msg("SYNC_EVENTS", sync_events_subject("gong"))
    assert fin.data is not None
    await js.publish(sync_events_subject("gong"), fin.data)
    await worker.progress(request, 3)
    clock.advance(minutes=1)
    assert await drain_events(scheduler, js) == ["unchanged", "unchanged"]
    assert dict(await state_of(pool, integration_id)) == state
    assert [dict(r) for r in await runs_of(pool, integration_id)] == [dict(finished)]


async def test_events_of_unknown_runs_are_acknowledged_and_ignored(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    for run_id in ("8a7e4e52-0000-4000-8000-000000000000", "not-a-uuid"):
        event = {
            "kind": "finished",
            "run_id": run_id,
            "integration_id": "x",
            "status": "success",
            "pages": 1,
            "calls_published": 1,
            "at": "2026-03-02T00:00:31Z",
        }
        await js.publish(sync_events_subject("fathom"), msgspec.json.encode(event))
    assert await drain_events(scheduler, js) == ["unchanged", "unchanged"]
    assert await pool.fetchval("select count(*) from sync_runs") == 0


async def test_unreadable_events_are_dead_lettered_and_do_not_block_the_rest(
    scheduler: Scheduler, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom")
    worker = StandInWorker(js, clock)
    request, _ = await _one_request(scheduler, worker)
    await js.publish(sync_events_subject("fathom"), b"{not json")
    await js.publish(sync_events_subject("fathom"), b'{"kind": "finished", "v": 2, "run_id": "r"}')
    await worker.finish(request, "success")
    assert await drain_events(scheduler, js) == ["dead_lettered", "dead_lettered", "applied"]
    assert (await state_of(pool, integration_id))["status"] == "success"

    info = await js.stream_info(DLQ)
    assert info.state.messages == 2
    last = await js.get_last_msg(DLQ, dlq_subject("scheduler"))
    assert last.data is not None
    letter = msgspec.json.decode(last.data, type=DeadLetterMsg)
    assert letter.consumer == "scheduler"
    assert letter.subject == sync_events_subject("fathom")
    assert letter.data.startswith(b'{"kind": "finished", "v": 2')
    assert "ValidationError" in letter.error
