"""Slots are shared between integrations over time (issue #17, item 4).

Four tenants of a healthy Fathom run long backfills and hold the four slots (the default
concurrency); a fifth tenant's "latest 5" must not wait until one of them ends: a long run gives
its slot up after its time slice when requests wait, and resumes from its checkpoint. A run
redelivered many times that way (or given back unstarted many times) is never dropped by
JetStream's delivery limit: the worker counts the run's failures itself and a run that really
gives up says so in its ``SyncFinished``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, SyncFinished, SyncProgress
from callstream.runtime import consumer_config
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app

KEYS = {f"tenant-key-{i}": f"account-{i}" for i in range(5)}


async def _stored(harness: Any, integration: str, n: int, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        calls = {raw.external_id for raw, _ in await harness.raw_calls() if raw.integration_id == integration}
        if len(calls) >= n:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def test_a_new_tenants_latest_run_starts_within_seconds_behind_four_long_backfills(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=31, meetings=160, span_days=10, api_keys=KEYS))
    state.faults.delay_seconds = 1.0  # each page takes a second: a backfill takes ~16 s alone
    async with serve_in_process(create_app(state)) as url:
        tenants = [harness.store.add("fathom", "api_key", url + "/external/v1", api_key=k) for k in KEYS]
        worker = harness.start(harness.settings_with(concurrency=4, limits_enabled=False))
        backfills = [await harness.request("fathom", t, "backfill") for t in tenants[:4]]
        while len(worker.running) < 4:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the four backfills are well into their first slice
        latest = await harness.request("fathom", tenants[4], "latest", limit=5)
        took = await _stored(harness, tenants[4], 5, timeout=30.0)
        print(f"latest 5 stored after {took}s behind four long backfills")
        assert took is not None, "the new tenant's latest 5 were not stored in 30 s"
        assert took <= 6.0, f"the new tenant's latest 5 took {took:.1f}s"
        assert (await harness.finished(latest, timeout=10.0)).status == "success"
        for run_id in backfills:  # the backfills go on from their checkpoints and finish whole
            done = await harness.finished(run_id, timeout=90.0)
            assert done.status == "success", done.error
            assert done.calls_published == 160


async def test_deliveries_that_were_not_failures_never_end_a_run_and_a_run_that_gives_up_says_so(
    harness: Any,
) -> None:
    """Requests given back 15 times each (time slices, parked requests given back, a failing
    host's give-backs: each a delivery) on a consumer still limited to 20 deliveries: the worker
    lifts the limit, the healthy run is done, and the run whose provider stays down fails its own
    10 times (25 deliveries, past the old limit that would have dropped it silently) and then ends
    with its SyncFinished error."""
    spec = GATEWAY_PULL_CONSUMER
    old = consumer_config(spec)
    old.max_deliver = 20  # a deployment from before: the worker lifts the limit in place
    await harness.js.add_consumer(spec.stream, old)
    state = FathomState(FathomConfig(seed=32, meetings=12, span_days=10))
    async with serve_in_process(create_app(state)) as url:
        healthy = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
        dead = harness.store.add("fathom", "api_key", "http://127.0.0.1:9/external/v1", api_key="dead-key")
        runs = [await harness.request("fathom", healthy, "backfill"), await harness.request("fathom", dead, "backfill")]
        sub = await harness.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        naks = 0
        while naks < 30:  # 15 deliveries of each, given back unstarted
            for msg in await sub.fetch(2, timeout=5.0):
                await msg.nak()
                naks += 1
        await sub.unsubscribe()
        settings = harness.settings_with(
            retry_attempts=1,
            redeliver_delay_seconds=0.05,
            defer_max_seconds=0.1,
            breaker_open_seconds=0.05,
            breaker_open_max_seconds=0.1,
        )
        harness.start(settings, max_deliver=10)
        await asyncio.sleep(0.5)
        info = await harness.js.consumer_info(SYNC, spec.durable)
        done = await harness.finished(runs[0], timeout=20.0)
        assert done.status == "success", done.error
        assert done.calls_published == 12
        failed = await harness.finished(runs[1], timeout=30.0)
        assert isinstance(failed, SyncFinished)
        assert failed.status == "error"
        assert "gave up after 10 deliveries" in (failed.error or ""), failed.error
        waits = [e for e in await harness.events(runs[1]) if isinstance(e, SyncProgress) and e.waiting_for]
        assert len(waits) == 9, f"{len(waits)} failed deliveries announced before giving up, not 9"
        assert info.config.max_deliver == spec.max_deliver


async def test_a_parked_request_no_local_slot_takes_is_given_back_for_another_replica(harness: Any) -> None:
    """Replica 1's two slots are busy with long backfills (slices off) while a second request of
    one of their tenants is parked there: it is given back after ``park_max_seconds`` and
    replica 2 runs it, instead of it waiting under replica 1's lease until a backfill ends."""
    state = FathomState(FathomConfig(seed=33, meetings=200, span_days=10, api_keys=KEYS))
    state.faults.delay_seconds = 1.0  # a backfill takes ~20 s
    async with serve_in_process(create_app(state)) as url:
        a, b = (harness.store.add("fathom", "api_key", url + "/external/v1", api_key=k) for k in list(KEYS)[:2])
        await harness.request("fathom", a, "backfill")
        latest = await harness.request("fathom", a, "latest", limit=5)  # tenant a holds its share: parked
        await harness.request("fathom", b, "backfill")  # takes replica 1's second slot
        one = harness.start(
            harness.settings_with(
                concurrency=2, lookahead=2, slots_per_host=2, limits_enabled=False, slice_seconds=0, park_max_seconds=2
            )
        )
        deadline = time.monotonic() + 10
        while (len(one.running) < 2 or not one.fair.parked) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(one.running) == 2
        assert one.fair.parked, "the latest request was not parked"
        started = time.monotonic()
        harness.start(harness.settings_with(concurrency=2, limits_enabled=False, slice_seconds=0))
        done = await harness.finished(latest, timeout=15.0)
        took = time.monotonic() - started
        print(f"parked latest run finished after {took:.1f}s by another replica")
        assert done.status == "success", done.error
        assert took <= 8.0, took
        await harness.stop()
