"""Gong pulls against the fake Gong over HTTP, publishing into the test's JetStream."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from callstream.contracts import GATEWAY_PULL_CONSUMER, SYNC, GongCallBundle, TimeWindow, pull_event_id
from callstream.gateway.pull._gong import CONTENT_SELECTOR
from tests.fakes.gong import Selector, build_call, build_transcript


def _extensive(state: Any) -> list[Any]:
    return [e for e in state.log.api() if e.path == "/v2/calls/extensive"]


async def test_backfill_pages_to_the_end_byte_for_byte_within_the_request_budget(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    harness.start()
    run_id = await harness.request("gong", integration, "backfill")
    finished = await harness.finished(run_id)

    n = len(state.index.ids)
    assert finished.status == "success", finished.error
    assert finished.calls_published == n
    assert finished.pages == math.ceil(n / 100)
    assert finished.watermark is not None
    calls = await harness.raw_calls()
    assert len(calls) == n
    selector = Selector.parse(CONTENT_SELECTOR)
    for raw, headers in calls:
        assert raw.origin == "pull"
        assert raw.source == "gong"
        assert headers["Nats-Msg-Id"] == pull_event_id(integration, raw.external_id, bytes(raw.payload))
        bundle = msgspec.json.decode(raw.payload, type=GongCallBundle)
        pos = state.index.position(raw.external_id)
        expected = build_call(state.index, pos, selector, host=state.config.app_host)
        assert bytes(bundle.call) == msgspec.json.encode(expected)
        assert bytes(bundle.transcript) == msgspec.json.encode(build_transcript(state.index, pos))
    # request economy: at most 3·ceil(N/100) + 2 requests, and never over the limit
    served = state.log.api()
    assert len(served) <= 3 * math.ceil(n / 100) + 2
    assert all(e.status == 200 for e in served)
    assert harness.max_in_window([e.at for e in served], 1.0) <= state.config.requests_per_second
    # the run was acknowledged: nothing pending on the work queue
    info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_an_empty_window_is_an_empty_page_not_an_error(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    harness.start()
    window = TimeWindow(start=datetime(2001, 1, 1, tzinfo=UTC), end=datetime(2001, 2, 1, tzinfo=UTC))
    finished = await harness.finished(await harness.request("gong", integration, "range", window=window))
    assert finished.status == "success", finished.error
    assert finished.calls_published == 0
    assert [e.status for e in state.log.api()] == [404]


async def test_range_publishes_exactly_the_calls_of_the_window(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    start, end = state.index.started[40], state.index.started[160]
    harness.start()
    finished = await harness.finished(
        await harness.request("gong", integration, "range", window=TimeWindow(start=start, end=end))
    )
    assert finished.status == "success", finished.error
    published = {raw.external_id for raw, _ in await harness.raw_calls()}
    assert published == set(state.index.ids[40:160])


async def test_an_expired_cursor_restarts_the_window_and_nothing_is_doubled(harness: Any, gong: Any) -> None:
    state, url = gong
    state.faults.expire_next_cursor = 1
    integration = harness.gong_basic(url)
    harness.start()
    finished = await harness.finished(await harness.request("gong", integration, "backfill"))
    assert finished.status == "success", finished.error
    assert '"restarts":1' in (finished.checkpoint or "")
    assert [e.status for e in _extensive(state)].count(400) == 1
    calls = await harness.raw_calls()
    assert len(calls) == len(state.index.ids)  # the restarted page was a JetStream duplicate


async def test_5xx_is_retried_and_retry_after_is_honoured(harness: Any, gong: Any) -> None:
    state, url = gong
    state.faults.fail_next, state.faults.fail_status = 2, 503
    integration = harness.gong_basic(url)
    # our own limiter off, so the fake's 3/s limit answers 429 with Retry-After and we must wait
    harness.start(harness.settings_with(limits_enabled=False))
    finished = await harness.finished(await harness.request("gong", integration, "backfill"))
    assert finished.status == "success", finished.error
    served = state.log.api()
    assert [e.status for e in served[:2]] == [503, 503]
    throttled = [i for i, e in enumerate(served) if e.status == 429]
    assert throttled, "the fake never throttled; the test proves nothing"
    for i in throttled:
        nxt = next(e for e in served[i + 1 :] if e.path == served[i].path)
        assert nxt.at - served[i].at >= 0.9  # Retry-After: 1 (a second's window)
    assert len(await harness.raw_calls()) == len(state.index.ids)


async def test_401_ends_the_run_at_once(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url, secret="wrong")
    harness.start()
    finished = await harness.finished(await harness.request("gong", integration, "backfill"))
    assert finished.status == "error"
    assert "401" in (finished.error or "")
    assert [e.status for e in state.log.api()] == [401]
    await asyncio.sleep(0.3)
    info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0
    assert await harness.raw_calls() == []


async def test_latest_publishes_only_the_newest_calls(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    state.add_calls(3, started=datetime.now(UTC) - timedelta(minutes=10))  # windows end at whole seconds
    harness.start()
    finished = await harness.finished(await harness.request("gong", integration, "latest", limit=5))
    assert finished.status == "success", finished.error
    assert finished.watermark is None
    published = {raw.external_id for raw, _ in await harness.raw_calls()}
    assert published == set(state.index.ids[-5:])


async def test_a_late_transcript_is_picked_up_by_the_next_incremental_runs_lookback(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    late = state.add_calls(2, transcript_delay=1.0, started=datetime.now(UTC) - timedelta(hours=2))
    harness.start()
    lookback = TimeWindow(start=datetime.now(UTC) - timedelta(days=1))
    first = await harness.finished(await harness.request("gong", integration, "incremental", window=lookback))
    assert first.status == "success", first.error
    bundles = {
        raw.external_id: msgspec.json.decode(raw.payload, type=GongCallBundle) for raw, _ in await harness.raw_calls()
    }
    assert set(late) <= set(bundles)
    assert not any(bundles[c].has_transcript for c in late)
    await asyncio.sleep(1.1)
    second = await harness.finished(await harness.request("gong", integration, "incremental", window=lookback))
    assert second.status == "success", second.error
    later = [
        msgspec.json.decode(raw.payload, type=GongCallBundle)
        for raw, _ in await harness.raw_calls()
        if raw.external_id in late
    ]
    assert sum(b.has_transcript for b in later) == 2  # a second RawCall per late call, now with transcript


async def test_a_killed_run_resumes_after_its_last_completed_page(harness: Any, gong: Any) -> None:
    from callstream.runtime import consumer_config

    state, url = gong
    integration = harness.gong_basic(url)
    # a short lease so the test need not wait two minutes for the redelivery
    await harness.js.add_consumer(
        SYNC, consumer_config(msgspec.structs.replace(GATEWAY_PULL_CONSUMER, ack_wait_seconds=2.0))
    )
    state.faults.delay_seconds = 0.4
    first = harness.start()
    run_id = await harness.request("gong", integration, "backfill")
    for _ in range(200):
        if any(getattr(e, "page", 0) >= 1 for e in await harness.events(run_id)):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first page never completed")
    await harness.kill(first)
    state.faults.delay_seconds = 0.0
    harness.start()
    finished = await harness.finished(run_id, timeout=30)

    assert finished.status == "success", finished.error
    assert finished.calls_published == len(state.index.ids)
    first_pages = [e for e in _extensive(state) if e.body["offset"] == 0]
    assert len(first_pages) == 1  # the completed page was not fetched again
    assert len(await harness.raw_calls()) == len(state.index.ids)
    assert len(_extensive(state)) <= finished.pages + 1  # at most the page in flight at the kill, again
    info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_provider_that_stays_down_ends_the_run_once_its_deliveries_run_out(harness: Any, gong: Any) -> None:
    state, url = gong
    state.faults.fail_next, state.faults.fail_status = 10_000, 503
    integration = harness.gong_basic(url)
    # the host's breaker would stop the sixth attempt (it has its own tests): counted here is attempts
    harness.start(
        harness.settings_with(retry_attempts=2, redeliver_delay_seconds=0.1, breaker_failures=10), max_deliver=3
    )
    finished = await harness.finished(await harness.request("gong", integration, "backfill"), timeout=30)
    assert finished.status == "error"
    assert "gave up after 3 deliveries" in (finished.error or "")
    assert len(state.log.api()) == 3 * 2  # three deliveries, two attempts each
    await asyncio.sleep(0.3)
    info = await harness.js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
