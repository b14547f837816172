"""A pull worker restarted after a broker error (issue #17, item 1 and 4): its runs in flight are
not leaked. The consumer is deleted under two running backfills, so the free slot's fetch fails and the
supervisor (here a loop like it, building a new ``PullWorker`` as ``pull_worker``'s ``run`` does)
starts it again: never more runs at once than the concurrency, and every run finishes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.msg import Msg

from callstream.contracts import GATEWAY_PULL_CONSUMER, SyncFinished
from callstream.gateway.pull import ProviderHosts, PullState, PullWorker
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app


class Counted(PullWorker):
    active = 0
    most = 0

    async def handle(self, msg: Msg) -> None:
        Counted.active += 1
        Counted.most = max(Counted.most, Counted.active)
        try:
            await super().handle(msg)
        finally:
            Counted.active -= 1


async def test_runs_in_flight_during_a_restart_stay_within_the_concurrency_and_all_finish(harness: Any) -> None:
    slow = FathomState(FathomConfig(seed=21, meetings=60, span_days=10))
    slow.faults.delay_seconds = 1.5  # a page takes a while: runs are in flight when the broker fails
    async with serve_in_process(create_app(slow)) as url:
        integrations = [harness.store.add("fathom", "api_key", None, api_key="fathom-test-key") for _ in range(4)]
        settings = harness.settings_with(concurrency=3, limits_enabled=False, restart_wait_seconds=10.0)
        state = PullState(settings)  # what ``pull_worker`` makes once, outside its restartable ``run``
        stop = asyncio.Event()
        restarts = 0

        async def supervised() -> None:
            nonlocal restarts
            while not stop.is_set():
                worker = Counted(
                    js=harness.js,
                    store=harness.store,
                    http=harness.http,
                    checkpoints=harness.checkpoints,
                    settings=settings,
                    hosts=ProviderHosts(url, url),
                    state=state,
                )
                watcher = asyncio.create_task(_forward(stop, worker.stopping))
                try:
                    await worker.serve()
                except Exception:
                    restarts += 1
                    await asyncio.sleep(0.2)
                finally:
                    watcher.cancel()

        Counted.active = Counted.most = 0
        loop = asyncio.create_task(supervised())
        runs = [await harness.request("fathom", i, "backfill") for i in integrations[:2]]
        while Counted.active < 2:
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # a page into each; the free slot's fetch fails next
        await harness.js.delete_consumer(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
        try:
            for _ in range(300):
                if restarts:
                    break
                await asyncio.sleep(0.05)
            runs += [await harness.request("fathom", i, "backfill") for i in integrations[2:]]
            done = [await harness.finished(run_id, timeout=60.0) for run_id in runs]
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop, 15.0)
        print(f"restarts {restarts}, most runs at once {Counted.most}")
        assert restarts >= 1
        assert Counted.most <= 3, f"{Counted.most} runs at once with a concurrency of 3"
        assert all(isinstance(d, SyncFinished) and d.status == "success" for d in done), done
        assert all(d.calls_published == 60 for d in done), [d.calls_published for d in done]


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
