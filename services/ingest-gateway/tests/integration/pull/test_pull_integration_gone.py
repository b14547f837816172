"""A run whose integration is erased (or disabled) while it goes on stops publishing at its next
page boundary: the worker read the integration once at the start, and a backfill lasts hours."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from callstream.contracts import GATEWAY_PULL_CONSUMER, SyncFinished, SyncProgress
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app


async def _first_page(harness: Any, run_id: str) -> None:
    deadline = time.monotonic() + 10
    while not [e for e in await harness.events(run_id) if isinstance(e, SyncProgress)]:
        assert time.monotonic() < deadline, "no page done"
        await asyncio.sleep(0.05)


async def _set_status(harness: Any, integration_id: str, status: str) -> None:
    access = harness.store.accesses[integration_id]
    harness.store.accesses[integration_id] = dataclasses.replace(access, status=status)


async def test_an_erased_integrations_run_stops_publishing_and_forgets_its_checkpoint(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=43, meetings=60, span_days=10, page_size=10))
    state.faults.delay_seconds = 0.3  # six pages of 0.3 s: time to erase after the first
    async with serve_in_process(create_app(state)) as url:
        integration = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
        worker = harness.start(harness.settings_with(limits_enabled=False))
        run_id = await harness.request("fathom", integration, "backfill")
        await _first_page(harness, run_id)
        await _set_status(harness, integration, "erased")
        published = len(await harness.raw_calls())  # a page in flight may still be stored
        deadline = time.monotonic() + 10
        while worker.running:
            assert time.monotonic() < deadline, "the run did not stop"
            await asyncio.sleep(0.05)

    events = await harness.events(run_id)
    assert not [e for e in events if isinstance(e, SyncFinished)]  # its history is being erased
    assert len(await harness.raw_calls()) <= published + 10 < 60  # at most the page being published
    assert await harness.checkpoints.load(run_id) is None
    info = await harness.js.consumer_info(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)


async def test_a_disabled_integrations_run_stops_and_says_why(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=44, meetings=60, span_days=10, page_size=10))
    state.faults.delay_seconds = 0.3
    async with serve_in_process(create_app(state)) as url:
        integration = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
        harness.start(harness.settings_with(limits_enabled=False))
        run_id = await harness.request("fathom", integration, "backfill")
        await _first_page(harness, run_id)
        await _set_status(harness, integration, "disabled")
        finished = await harness.finished(run_id, timeout=10)

    assert finished.status == "error"
    assert "disabled" in (finished.error or "")
    assert len(await harness.raw_calls()) == finished.calls_published < 60


async def test_a_request_queued_before_the_erasure_runs_nothing_and_leaves_nothing(harness: Any) -> None:
    integration = harness.store.add("fathom", "api_key", "http://127.0.0.1:9/external/v1", api_key="fathom-test-key")
    await _set_status(harness, integration, "erased")
    worker = harness.start(harness.settings_with(limits_enabled=False))
    run_id = await harness.request("fathom", integration, "backfill")
    deadline = time.monotonic() + 10
    while True:
        info = await harness.js.consumer_info(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0 and not worker.running:
            break
        assert time.monotonic() < deadline, "the request was not settled"
        await asyncio.sleep(0.05)
    assert await harness.events(run_id) == []  # no SyncFinished naming it
    assert await harness.checkpoints.load(run_id) is None
    assert await harness.raw_calls() == []
