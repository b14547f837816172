"""Two schedulers on one database for 60 simulated hours: never two runs of an integration at
once, never a missed hour, every run requested exactly once, and the watermark never jumps a gap."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from datetime import timedelta

import msgspec
import nats
from scheduler_kit import FakeClock, StandInWorker, add_integration, drain_events, make_scheduler, runs_of, state_of

from callstream.contracts import SyncRequested
from callstream.runtime import create_pool

HOURS = 60
STEP = timedelta(minutes=5)


async def test_two_schedulers_sixty_hours(
    database_url: str, nats_url: str, jetstream: object, clock: FakeClock
) -> None:
    pools = [await create_pool(database_url, max_size=3) for _ in range(2)]
    connections = [await nats.connect(nats_url) for _ in range(3)]
    try:
        contexts = [c.jetstream() for c in connections]
        schedulers = [make_scheduler(p, clock, js) for p, js in zip(pools, contexts, strict=False)]
        pool = pools[0]
        flaky_calls = itertools.count()
        flaky = await add_integration(pool, "fathom", workspace_id="ws-flaky")
        hourly = [await add_integration(pool, "fathom"), await add_integration(pool, "gong"), flaky]
        half_hourly = await add_integration(pool, "gong", settings={"cadence_seconds": 1800})

        def outcome(request: SyncRequested) -> str:
            if request.integration_id == str(flaky) and next(flaky_calls) % 3 == 2:
                return "error"
            return "success"

        worker = StandInWorker(contexts[2], clock, outcome=outcome)
        in_flight: list[tuple[SyncRequested, object]] = []
        created_by = Counter[int]()
        rng = random.Random(7)
        start = clock.now()
        while clock.now() < start + timedelta(hours=HOURS):
            # Both replicas tick at the same moment, in a random order of arrival.
            order = rng.sample(range(2), 2)
            reports = await asyncio.gather(*(schedulers[i].tick() for i in order))
            for i, report in zip(order, reports, strict=False):
                created_by[i] += len(report.created_runs)
            # Runs started one step ago finish now, so that runs span time and overlap could show.
            for request, msg in in_flight:
                await worker.finish(request, outcome(request))
                await msg.ack_sync()  # type: ignore[attr-defined]
            in_flight = []
            for msg in await worker.take():
                request = msgspec.json.decode(msg.data, type=SyncRequested)
                worker.seen.append(request)
                await worker.progress(request, 1)
                in_flight.append((request, msg))
            # Either replica may consume the events (one durable consumer shared by both).
            consumer = rng.randrange(2)
            await drain_events(schedulers[consumer], contexts[consumer])
            clock.advance(seconds=STEP.total_seconds())

        assert min(created_by.values()) > 0, created_by  # both replicas really competed
        requested = Counter(r.run_id for r in worker.seen)
        assert max(requested.values()) == 1  # each run published once (or deduplicated)

        for integration_id, cadence in [
            *((i, timedelta(hours=1)) for i in hourly),
            (half_hourly, timedelta(minutes=30)),
        ]:
            runs = await runs_of(pool, integration_id)
            assert {str(r["id"]) for r in runs} <= set(requested)
            # Never two at once: each run starts after the previous one finished.
            for before, after in itertools.pairwise(runs):
                assert before["finished_at"] is not None
                assert after["created_at"] >= before["finished_at"], (before["id"], after["id"])
            # No missed slot: every cadence period of the 60 hours saw a run start.
            slots = {int((r["created_at"] - start) / cadence) for r in runs}
            assert slots == set(range(int(timedelta(hours=HOURS) / cadence))), integration_id
            # The watermark only ever follows windows that start at or before it.
            successes = [r for r in runs if r["status"] == "success" and r["trigger"] == "schedule"]
            for before, after in itertools.pairwise(successes):
                assert after["window_start"] <= before["window_end"]
            state = await state_of(pool, integration_id)
            assert state["watermark"] == max(r["window_end"] for r in successes)

        flaky_runs = await runs_of(pool, flaky)
        assert any(r["status"] == "error" for r in flaky_runs)
        assert len(flaky_runs) > HOURS  # failures were retried within their hour
    finally:
        for c in connections:
            await c.close()
        for p in pools:
            await p.close()
