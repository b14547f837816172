"""The shared consumer loop on a real JetStream: order after a transient failure, and the last
delivery of a message whose handling never settled (a process that died or stalled) is
dead-lettered instead of dropped by ``max_deliver``."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import nats
from nats.js import JetStreamContext

from callstream.contracts import DLQ, FEATURES, FEATURES_LINKED, ConsumerSpec, DeadLetter, dlq_subject
from callstream.runtime import Redelivery, consume, ensure_consumer

FAST = Redelivery(first_delay=0.2, max_delay=0.5)


def _spec(durable: str, **overrides: float) -> ConsumerSpec:
    return ConsumerSpec(
        stream=FEATURES,
        durable=durable,
        filter_subject=FEATURES_LINKED,
        description="runtime test consumer",
        **overrides,  # type: ignore[arg-type]
    )


async def _run_until(predicate, stopping: asyncio.Event, task: asyncio.Task[None], timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_after_a_transient_failure_the_rest_come_back_after_it_in_order(jetstream: JetStreamContext) -> None:
    for i in range(1, 5):
        await jetstream.publish(FEATURES_LINKED, f"link-{i}".encode())
    applied: list[str] = []
    failed_once: list[str] = []

    async def handler(msg: object) -> None:
        data = msg.data.decode()  # type: ignore[attr-defined]
        if data == "link-2" and not failed_once:
            failed_once.append(data)
            raise ConnectionError("database away")
        applied.append(data)

    stopping = asyncio.Event()
    task = asyncio.create_task(
        consume(jetstream, _spec("order-test"), handler, stopping, batch=10, fetch_timeout=0.5, redelivery=FAST)
    )
    await _run_until(lambda: len(applied) == 4, stopping, task)
    # the newest write wins downstream (a feature's name): an older link must not land last
    assert applied == ["link-1", "link-2", "link-3", "link-4"]


async def test_the_last_delivery_of_a_message_never_settled_is_dead_lettered(
    nats_url: str, jetstream: JetStreamContext
) -> None:
    spec = _spec("stall-test", ack_wait_seconds=0.5, max_deliver=3)
    await ensure_consumer(jetstream, spec)
    await jetstream.publish(FEATURES_LINKED, b"kills-its-handler")
    # Two deliveries that a dying process takes and never settles (as an OOM-killed one would).
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        for _ in range(2):
            [msg] = await sub.fetch(1, timeout=5)
            assert msg.metadata.num_delivered == _ + 1
            await asyncio.sleep(0.7)  # past ack_wait, unsettled
    finally:
        await nc.close()
    handled: list[int] = []

    async def handler(msg: object) -> None:
        handled.append(msg.metadata.num_delivered)  # type: ignore[attr-defined]

    stopping = asyncio.Event()
    task = asyncio.create_task(consume(jetstream, spec, handler, stopping, fetch_timeout=0.5, redelivery=FAST))

    async def letters() -> list[DeadLetter]:
        info = await jetstream.stream_info(DLQ)
        if not info.state.messages:
            return []
        raw = await jetstream.get_last_msg(DLQ, dlq_subject(spec.durable))
        return [msgspec.json.decode(raw.data or b"", type=DeadLetter)]

    found: list[DeadLetter] = []

    async def poll() -> None:
        while not found:
            with contextlib.suppress(Exception):
                found.extend(await letters())
            await asyncio.sleep(0.1)

    poller = asyncio.create_task(poll())
    await _run_until(lambda: bool(found), stopping, task)
    poller.cancel()
    [letter] = found
    assert letter.delivery_count == 3
    assert letter.error.startswith("gave up after 3 deliveries")
    assert letter.data == b"kills-its-handler"
    assert handled == []  # the last delivery is not handed to a handler that may die again
