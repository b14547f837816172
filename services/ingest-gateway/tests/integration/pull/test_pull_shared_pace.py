"""Fathom's per-minute and Gong's per-second limits are per provider account: two gateway replicas
pulling for one account keep them together, through the JetStream KV bucket they share.

Each "replica" has its own NATS connection, limiter registry and worker; only the broker and the
provider are shared, as between gateway processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from callstream.contracts import TimeWindow
from callstream.gateway.pull import CheckpointStore, LimiterRegistry, QuotaStore
from callstream.gateway.pull._limits import account_key
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

BUCKET = "gateway_pull_quota"


@pytest.fixture
async def second_js(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def _replica(harness: Any, js: Any, settings: Any) -> Any:
    checkpoints = await CheckpointStore.open(js, "gateway_pull_checkpoints", ttl_seconds=3600)
    worker = harness.worker(settings, js=js, limiters=LimiterRegistry(settings, await QuotaStore.open(js, BUCKET)))
    worker.checkpoints = checkpoints
    return worker


async def test_two_replicas_keep_one_fathom_accounts_window_together(
    harness: Any, jetstream: Any, second_js: Any
) -> None:
    # Fathom's 60 a minute and 30 heavy a minute, on a 2-second window so the test is short.
    state = FathomState(FathomConfig(seed=31, meetings=60, span_days=20))
    state.faults.limits_enabled = False  # only our own limits keep the window here
    settings = harness.settings_with(fathom_requests_per_window=6, fathom_heavy_per_window=3, fathom_window_seconds=2.0)
    workers = [await _replica(harness, js, settings) for js in (jetstream, second_js)]
    async with serve_in_process(create_app(state)) as url:
        # two integrations on one Fathom account (one API key): one window for both
        integrations = [
            harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key") for _ in workers
        ]
        halves = [
            TimeWindow(start=state.index.created[29], end=state.index.created[0]),
            TimeWindow(start=state.index.created[59], end=state.index.created[29]),
        ]
        requests = [
            harness.sync_request("fathom", i, "range", window=w) for i, w in zip(integrations, halves, strict=True)
        ]
        started = time.monotonic()
        finished = await asyncio.gather(*(w.run(r) for w, r in zip(workers, requests, strict=True)))
        took = time.monotonic() - started
    assert all(f.status == "success" for f in finished), [f.error for f in finished]
    served = state.log.api()
    heavy = [e.at for e in served if e.heavy]
    print(f"{len(served)} requests ({len(heavy)} heavy) in {took:.1f}s")
    assert len(heavy) >= 6, "too few requests for the test to show anything"
    assert harness.max_in_window(heavy, 2.0) <= 3  # 30 heavy a minute, scaled
    assert harness.max_in_window([e.at for e in served], 2.0) <= 6


async def test_two_replicas_keep_one_gong_accounts_three_a_second_together(
    harness: Any, jetstream: Any, second_js: Any
) -> None:
    from callstream.gateway.pull._pace import SharedPace

    state = GongState(GongConfig(seed=32, calls=30, span_days=30))
    state.faults.limits_enabled = False
    settings = harness.settings_with(gong_requests_per_second=3.0)
    stores = [await QuotaStore.open(js, BUCKET) for js in (jetstream, second_js)]
    async with serve_in_process(gong_app(state)) as url:
        key = account_key("gong", url, "gong-access-key")
        paces = [LimiterRegistry(settings, store).gong(key).every[0] for store in stores]
        assert all(isinstance(p, SharedPace) for p in paces)
        times: list[float] = []

        async def request(pace: Any) -> None:
            for _ in range(3):
                await pace.acquire()
                times.append(time.monotonic())

        await asyncio.gather(*(request(paces[i % 2]) for i in range(4)))  # two runs on each replica
    assert len(times) == 12
    assert harness.max_in_window(times, 1.0) <= 3
    assert times[-1] - times[0] >= (12 - 3) / 3.0 * 0.9  # the pace is kept, not merely bursts spread


async def test_a_slow_bucket_falls_back_to_a_share_of_the_limit_in_this_replica(harness: Any, jetstream: Any) -> None:
    from callstream.gateway.pull._pace import SharedPace

    settings = harness.settings_with(gong_requests_per_second=3.0, pace_kv_timeout_seconds=0.05)
    store = await QuotaStore.open(jetstream, BUCKET)
    pace = LimiterRegistry(settings, store).gong("gong:slow").every[0]
    assert isinstance(pace, SharedPace)

    class SlowKv:
        async def create(self, *args: Any, **kwargs: Any) -> int:
            await asyncio.sleep(1.0)
            return 1

        update = create

    pace.kv = SlowKv()  # type: ignore[assignment]
    times: list[float] = []
    started = time.monotonic()
    for _ in range(4):
        await pace.acquire()
        times.append(time.monotonic())
    assert times[-1] - started < 4 * 0.05 + 3.0  # never stalled on the bucket
    # alone at half the limit: 3 * 0.9 * 0.5 = 1.35 a second, one at a time
    assert harness.max_in_window(times, 1.0) <= 2
    assert times[-1] - times[0] >= 2.0


async def test_a_pace_taken_for_long_by_other_runs_releases_the_run(harness: Any, jetstream: Any) -> None:
    from callstream.gateway.pull import RunDeferred
    from callstream.gateway.pull._pace import SharedPace

    settings = harness.settings_with(fathom_requests_per_window=6, fathom_window_seconds=60.0, hold_wait_seconds=1.0)
    store = await QuotaStore.open(jetstream, BUCKET)
    pace = LimiterRegistry(settings, store).fathom("fathom:busy").every[0]
    assert isinstance(pace, SharedPace)
    # 5.4 a minute: one every 11.1 s; a run may wait up to four of them in its slot
    for _ in range(5):
        task = asyncio.create_task(pace.acquire())
        await asyncio.sleep(0.05)
        if task.done():
            continue
        task.cancel()
    with pytest.raises(RunDeferred) as released:
        await pace.acquire()
    assert released.value.delay > 4 * 11.1 - 1
