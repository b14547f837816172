"""Gong ``latest`` runs: the newest N calls, resumed partway after the worker dies."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, GongCallBundle
from callstream.gateway.pull._gong import CONTENT_SELECTOR
from callstream.runtime import consumer_config
from tests.fakes import serve_in_process
from tests.fakes.gong import GongConfig, GongState, Selector, build_call
from tests.fakes.gong import create_app as gong_app

LIMIT = 300


@pytest.fixture
async def gong_month() -> AsyncIterator[tuple[GongState, str]]:
    """1,000 calls over 30 days: ``latest`` needs the 1-day band (1 page), the 7-day band (2 pages)
    and part of the 30-day band (8 pages) for the newest 300."""
    state = GongState(GongConfig(seed=31, calls=1000, span_days=30))
    async with serve_in_process(gong_app(state)) as url:
        yield state, url


def _by_window(state: GongState) -> list[Any]:
    return [e for e in state.log.api() if e.path == "/v2/calls/extensive" and "window" in e.body]


def _by_id(state: GongState) -> list[Any]:
    return [e for e in state.log.api() if e.path == "/v2/calls/extensive" and "callIds" in e.body]


async def _assert_the_newest_published_byte_for_byte(harness: Any, state: GongState) -> None:
    selector = Selector.parse(CONTENT_SELECTOR)
    calls = await harness.raw_calls()
    bundles = {raw.external_id: msgspec.json.decode(raw.payload, type=GongCallBundle) for raw, _ in calls}
    assert set(bundles) == set(state.index.ids[-LIMIT:])  # ids are in start order: the newest 300
    for cid, bundle in bundles.items():
        sent = build_call(state.index, state.index.position(cid), selector, host=state.config.app_host)
        assert bytes(bundle.call) == msgspec.json.encode(sent)
        assert bundle.has_transcript


async def test_a_killed_latest_run_resumes_from_its_page_and_rereads_no_completed_page(
    harness: Any, gong_month: Any
) -> None:
    state, url = gong_month
    integration = harness.gong_basic(url)
    # a short lease so the test need not wait a minute for the redelivery
    await harness.js.add_consumer(
        SYNC, consumer_config(msgspec.structs.replace(GATEWAY_PULL_CONSUMER, ack_wait_seconds=2.0))
    )
    state.faults.delay_seconds = 0.3
    first = harness.start()
    run_id = await harness.request("gong", integration, "latest", limit=LIMIT)
    for _ in range(400):  # until the run is partway through the 30-day band
        cp = await harness.checkpoints.load(run_id)
        if cp is not None and cp.band == 2 and cp.cursor is not None:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the run never got into its third band")
    await harness.kill(first)
    at_kill = await harness.checkpoints.load(run_id)
    assert at_kill is not None
    assert at_kill.pages == 0  # nothing published yet: the run really is cut partway
    assert len(at_kill.candidates) >= 233  # what the first two bands held
    state.faults.delay_seconds = 0.0
    harness.start()
    finished = await harness.finished(run_id, timeout=60)

    assert finished.status == "success", finished.error
    assert finished.calls_published == LIMIT
    await _assert_the_newest_published_byte_for_byte(harness, state)
    pages = Counter((tuple(e.body["window"]), e.body["offset"]) for e in _by_window(state))
    assert len(pages) == 1 + 2 + 8  # every page of the bands it needed, and no other band
    assert sum(pages.values()) - len(pages) <= 1  # read twice: at most the page in flight at the kill
    bands = sorted({w for w, _ in pages}, reverse=True)  # newest band first (ISO strings sort by time)
    assert all(n == 1 for (w, _), n in pages.items() if w in bands[:2])  # completed bands never again
    # the resumed run fetched the candidates it had not seen by id, 100 at a time
    assert 1 <= len(_by_id(state)) <= math.ceil(LIMIT / 100)
    info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_latest_run_through_an_expired_cursor_keeps_each_call_once(harness: Any, gong_month: Any) -> None:
    state, url = gong_month
    state.faults.expire_next_cursor = 1
    integration = harness.gong_basic(url)
    harness.start()
    finished = await harness.finished(await harness.request("gong", integration, "latest", limit=LIMIT))
    assert finished.status == "success", finished.error
    assert finished.calls_published == LIMIT
    assert '"restarts":1' in (finished.checkpoint or "")
    await _assert_the_newest_published_byte_for_byte(harness, state)
    assert _by_id(state) == []  # nothing to fetch again when the run never moved
