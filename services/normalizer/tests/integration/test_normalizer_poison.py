"""Any exception while mapping one raw call dead-letters that call with its error, and the rest of
its batch is stored (issue #17, item 2), on the real JetStream and PostgreSQL of the test."""

from __future__ import annotations

import msgspec
import pytest
from normalizer_itkit import publish_raw, settings_for, stream_messages

from callstream.contracts import CALLS_RAW, DLQ, NORMALIZER_CONSUMER, DeadLetter
from callstream.normalizer import _consumer
from callstream.normalizer._consumer import RawCallProcessor
from callstream.normalizer._mapping import map_raw_call


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), KeyError("x")])
async def test_a_mapping_that_raises_anything_dead_letters_only_that_call(
    pool, nc, kit, database_url, nats_url, monkeypatch, error
):
    js = nc.jetstream()
    poison = kit.raw_call(kit.fathom_meeting(recording_id=4242))
    good = kit.raw_call(kit.fathom_meeting())

    def mapping(data: bytes, *args, **kwargs):
        if data == poison:
            raise error
        return map_raw_call(data, *args, **kwargs)

    monkeypatch.setattr(_consumer, "map_raw_call", mapping)
    await publish_raw(js, poison, kit.subject_of("fathom"))
    await publish_raw(js, good, kit.subject_of("fathom"))
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
    msgs = await sub.fetch(2, timeout=5)
    assert len(msgs) == 2
    result = await RawCallProcessor(pool, js, settings_for(database_url, nats_url)).process(msgs)
    assert (result.stored, result.dead_lettered, result.retried) == (1, 1, 0)
    assert await pool.fetchval("select count(*) from messages") == 1
    [letter] = [msgspec.json.decode(m.data, type=DeadLetter) for m in await stream_messages(js, DLQ)]
    assert letter.data == poison
    assert letter.error.startswith(f"unmappable: {type(error).__name__}")
    info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    assert info.num_ack_pending == 0  # the poison is terminated, not left for redelivery


async def test_running_out_of_memory_while_mapping_is_retried_not_dead_lettered(
    pool, nc, kit, database_url, nats_url, monkeypatch
):
    """The process's memory, not the message: a good 16 MiB meeting met by memory pressure gets
    another delivery instead of the DLQ; the rest of its batch is stored."""
    js = nc.jetstream()
    pressed = kit.raw_call(kit.fathom_meeting(recording_id=4243))
    good = kit.raw_call(kit.fathom_meeting())

    def mapping(data: bytes, *args, **kwargs):
        if data == pressed:
            raise MemoryError
        return map_raw_call(data, *args, **kwargs)

    monkeypatch.setattr(_consumer, "map_raw_call", mapping)
    await publish_raw(js, pressed, kit.subject_of("fathom"))
    await publish_raw(js, good, kit.subject_of("fathom"))
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
    msgs = await sub.fetch(2, timeout=5)
    result = await RawCallProcessor(pool, js, settings_for(database_url, nats_url)).process(msgs)
    assert (result.stored, result.dead_lettered) == (1, 0)
    assert await stream_messages(js, DLQ) == []
    info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    assert info.num_ack_pending == 1  # nak'ed: it comes back for another try
