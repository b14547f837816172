"""A run whose request the scheduler withdrew from the SYNC work queue (it was cancelled) stops at
its next page boundary: no more pages, no SyncFinished, its checkpoint kept, its request settled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, SyncFinished, SyncProgress, sync_requested_subject
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app


async def test_a_withdrawn_request_stops_the_run_at_its_next_page(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=41, meetings=60, span_days=10, page_size=10))
    state.faults.delay_seconds = 0.3  # six pages of 0.3 s: time to cancel after the first
    async with serve_in_process(create_app(state)) as url:
        integration = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
        worker = harness.start(harness.settings_with(limits_enabled=False))
        request = harness.sync_request("fathom", integration, "backfill")
        ack = await harness.js.publish(
            sync_requested_subject("fathom"), msgspec.json.encode(request), headers={"Nats-Msg-Id": request.run_id}
        )
        deadline = time.monotonic() + 10
        while not [e for e in await harness.events(request.run_id) if isinstance(e, SyncProgress)]:
            assert time.monotonic() < deadline, "no page done"
            await asyncio.sleep(0.05)
        await harness.js.delete_msg(SYNC, ack.seq)  # what the scheduler's cancel does
        while worker.running:
            assert time.monotonic() < deadline, "the run did not stop"
            await asyncio.sleep(0.05)

    events = await harness.events(request.run_id)
    assert not [e for e in events if isinstance(e, SyncFinished)]
    pages = [e.page for e in events if isinstance(e, SyncProgress)]
    assert 1 <= max(pages) <= 3, pages  # the page seen, at most the one in flight and the one fetched ahead
    checkpoint = await harness.checkpoints.load(request.run_id)
    assert checkpoint is not None
    assert checkpoint.pages == max(pages)
    assert not checkpoint.finished
    assert len(await harness.raw_calls()) == checkpoint.calls_published < 60
    info = await harness.js.consumer_info(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
    assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
