"""One tenant's broken provider never stalls the others (issue #17, item 4).

Ten integrations whose provider refuses connections each ask for a backfill, ahead of a healthy
integration's "latest 5" in the work queue. The retry and redelivery timings are the production
defaults, so a failing run that held its slot while backing off would hold it here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, SyncFinished
from callstream.gateway.pull import ProviderHosts
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app

# What an operator runs (PullSettings' defaults), except the lease renewals, which only make the
# test's teardown quicker.
PRODUCTION_TIMINGS: dict[str, Any] = {
    "backoff_initial_seconds": 0.5,
    "backoff_max_seconds": 30.0,
    "redeliver_delay_seconds": 30.0,
}


@contextlib.contextmanager
def refused_ports(n: int) -> Iterator[list[int]]:
    """Loopback ports bound but never listening: every connection is refused at once, and no
    other test can take them meanwhile."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def _delivered(harness: Any, at_least: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
        if info.delivered.stream_seq >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} requests were delivered in {timeout}s")


async def _stored(harness: Any, integration: str, n: int, timeout: float) -> float | None:
    """Seconds until ``n`` calls of ``integration`` are in CALLS_RAW and its run has finished."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        calls = [raw for raw, _ in await harness.raw_calls() if raw.integration_id == integration]
        if len(calls) >= n:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


@pytest.mark.parametrize("hosts", [1, 10], ids=["one-dead-host", "ten-dead-hosts"])
async def test_a_healthy_latest_run_is_done_within_10s_behind_ten_dead_providers(harness: Any, hosts: int) -> None:
    state = FathomState(FathomConfig(seed=17, meetings=30, span_days=10))
    async with serve_in_process(create_app(state)) as url:
        with refused_ports(hosts) as ports:
            dead = [
                harness.store.add(
                    "fathom",
                    "api_key",
                    f"http://127.0.0.1:{ports[i % hosts]}/external/v1",
                    api_key=f"dead-key-{i}",
                )
                for i in range(10)
            ]
            healthy = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
            worker = harness.start(harness.settings_with(**PRODUCTION_TIMINGS))
            for integration in dead:
                await harness.request("fathom", integration, "backfill")
            await _delivered(harness, 4)  # the dead runs have the slots
            run_id = await harness.request("fathom", healthy, "latest", limit=5)
            took = await _stored(harness, healthy, 5, timeout=15.0)
            finished = [e for e in await harness.events(run_id) if isinstance(e, SyncFinished)]
            print(f"healthy latest 5 stored after {took}s; {len(worker.running)} runs held at the end")
            assert took is not None, "the healthy integration's 5 meetings were not stored in 15 s"
            assert took <= 10.0, f"the healthy integration's 5 meetings took {took:.1f}s"
            done = await harness.finished(run_id, timeout=10.0 - took + 1.0) if not finished else finished[0]
            assert done.status == "success", done.error
            assert done.calls_published == 5
            await harness.stop()


async def test_one_busy_host_leaves_a_slot_to_another_hosts_request(harness: Any, gong: Any) -> None:
    """Two slow Fathom backfills are ahead of a Gong "latest 5" in the queue, with two slots: the
    Fathom host may hold one slot while the Gong request waits, so Gong goes at once."""
    _, gong_url = gong
    slow = FathomState(FathomConfig(seed=18, meetings=40, span_days=10))
    slow.faults.delay_seconds = 1.0  # healthy but slow: each page takes a second
    async with serve_in_process(create_app(slow)) as fathom_url:
        busy = [harness.store.add("fathom", "api_key", None, api_key="fathom-test-key") for _ in range(2)]
        quick = harness.gong_basic(gong_url)
        worker = harness.worker(harness.settings_with(concurrency=2, limits_enabled=False))
        worker.hosts = ProviderHosts(fathom_url, gong_url)  # the integrations use the default hosts
        harness.workers.append((worker, asyncio.create_task(worker.serve())))
        backfills = [await harness.request("fathom", i, "backfill") for i in busy]
        run_id = await harness.request("gong", quick, "latest", limit=5)
        took = await _stored(harness, quick, 5, timeout=15.0)
        print(f"gong latest 5 stored after {took}s behind two slow fathom backfills")
        assert took is not None
        assert took < 2.5, f"the Gong request waited {took:.1f}s for a Fathom backfill to end"
        assert (await harness.finished(run_id)).status == "success"
        for backfill in backfills:  # both backfills still done: the parked one took the next slot
            done = await harness.finished(backfill, timeout=30.0)
            assert done.status == "success", done.error
            assert done.calls_published == 40


@contextlib.asynccontextmanager
async def hanging_host() -> AsyncIterator[str]:
    """A provider that stopped answering: it takes connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_provider_that_stopped_answering_holds_slots_for_one_timeout_only(harness: Any, gong: Any) -> None:
    """Fathom stops answering for its ten tenants (all on the default host, as in production):
    the first four requests hold the slots until they time out (3 s here); then the host counts as
    failing, gets one slot, and its queued requests are given back unstarted, so a Gong tenant's
    "latest 5" behind them goes next."""
    _, gong_url = gong
    async with hanging_host() as hung, httpx.AsyncClient(timeout=3.0) as http:
        harness.http = http
        dead = [harness.store.add("fathom", "api_key", None, api_key=f"hung-key-{i}") for i in range(10)]
        healthy = harness.gong_basic(gong_url)
        worker = harness.worker(harness.settings_with(**PRODUCTION_TIMINGS))
        worker.hosts = ProviderHosts(hung, gong_url)
        harness.workers.append((worker, asyncio.create_task(worker.serve())))
        for integration in dead:
            await harness.request("fathom", integration, "backfill")
        await _delivered(harness, 4)
        run_id = await harness.request("gong", healthy, "latest", limit=5)
        took = await _stored(harness, healthy, 5, timeout=20.0)
        print(f"gong latest 5 stored after {took}s behind ten hanging fathom tenants (3 s timeout)")
        assert took is not None
        assert took <= 3.0 + 3.0, took  # one timeout, not eight
        assert (await harness.finished(run_id)).status == "success"
        await harness.stop()
