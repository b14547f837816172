"""BytePull against a real nats-server: the pull request with ``max_bytes`` that nats-py's
``fetch`` cannot send, and the server's answers the consumer loop relies on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from normalizer_itkit import publish_raw

from callstream.contracts import NORMALIZER_CONSUMER
from callstream.normalizer._pull import BytePull, PullFailed

SUBJECT = "calls.raw.fathom"


@pytest.fixture
async def puller(nc: Any) -> Any:
    pull = await BytePull(nc, NORMALIZER_CONSUMER).open()
    try:
        yield pull
    finally:
        await pull.close()


async def _publish(js: Any, *sizes: int) -> None:
    for i, size in enumerate(sizes):
        await publish_raw(js, bytes([65 + i % 26]) * size, SUBJECT)


async def test_the_server_stops_before_a_message_that_would_not_fit(nc: Any, puller: Any) -> None:
    js = nc.jetstream()
    await _publish(js, 1000, 1000, 5000, 3000, 1000)

    first = await puller.pull(10, 4000, 1.0)
    assert [len(m.data) for m in first.msgs] == [1000, 1000]
    assert (first.nbytes, first.full, first.oversized) == (2000, True, False)
    for msg in first.msgs:
        await msg.ack()

    too_large = await puller.pull(10, 4000, 1.0)  # the 5000-byte one is next: nothing delivered
    assert (too_large.msgs, too_large.full, too_large.oversized) == ([], False, True)

    alone = await puller.pull(1, 0, 1.0)  # no byte limit: one message, whatever its size
    assert [len(m.data) for m in alone.msgs] == [5000]
    await alone.msgs[0].ack()

    rest = await puller.pull(10, 1_000_000, 1.0)
    assert [len(m.data) for m in rest.msgs] == [3000, 1000]
    assert (rest.full, rest.oversized) == (False, False)  # ran out: caught up
    for msg in rest.msgs:
        await msg.ack()


async def test_full_batches_back_to_back_are_each_full(nc: Any, puller: Any) -> None:
    """A full batch returns before the server's "409 Batch Completed" for it is read: that status
    must not end the next request early (and the next one's the one after, down the line)."""
    js = nc.jetstream()
    await _publish(js, *([100] * 31))
    batches = [await puller.pull(3, 1_000_000, 1.0) for _ in range(10)]
    assert [(len(b.msgs), b.full) for b in batches] == [(3, True)] * 10
    rest = await puller.pull(3, 1_000_000, 1.0)
    assert (len(rest.msgs), rest.full) == (1, False)
    seqs = {m.metadata.sequence.stream for b in [*batches, rest] for m in b.msgs}
    assert len(seqs) == 31


async def test_it_waits_for_the_first_message_and_returns_without_waiting_for_a_full_batch(
    nc: Any, puller: Any
) -> None:
    js = nc.jetstream()
    started = time.monotonic()
    empty = await puller.pull(100, 1_000_000, 0.5)
    assert empty.msgs == []
    assert 0.4 < time.monotonic() - started < 1.5

    async def later() -> None:
        await asyncio.sleep(0.3)
        await _publish(js, 10, 10)

    task = asyncio.create_task(later())
    started = time.monotonic()
    got = await puller.pull(100, 1_000_000, 3.0)
    await task
    assert 1 <= len(got.msgs) <= 2
    assert time.monotonic() - started < 1.5


async def test_a_deleted_consumer_is_an_error_for_the_supervisor(nc: Any, puller: Any) -> None:
    js = nc.jetstream()
    await js.delete_consumer(NORMALIZER_CONSUMER.stream, NORMALIZER_CONSUMER.durable)
    with pytest.raises(PullFailed):
        await puller.pull(10, 1_000_000, 1.0)


async def test_a_request_the_consumer_always_refuses_is_an_error_not_an_empty_batch(nc: Any) -> None:
    """A consumer limited (by an operator) to smaller requests refuses every one: raising lets the
    supervisor show it, where empty batches would loop silently."""
    spec = msgspec.structs.replace(NORMALIZER_CONSUMER, durable="limited")
    # nats-py's ConsumerConfig has no max_request_max_bytes: the API request, as the server reads it
    config = {"durable_name": spec.durable, "ack_policy": "explicit", "max_bytes": 1000}
    answer = await nc.request(
        f"$JS.API.CONSUMER.CREATE.{spec.stream}.{spec.durable}",
        msgspec.json.encode({"stream_name": spec.stream, "config": config}),
        timeout=5,
    )
    assert b'"error"' not in answer.data, answer.data
    pull = await BytePull(nc, spec).open()
    try:
        with pytest.raises(PullFailed, match="MaxRequestMaxBytes"):
            await pull.pull(10, 1_000_000, 1.0)
    finally:
        await pull.close()
