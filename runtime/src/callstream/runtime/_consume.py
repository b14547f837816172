"""The one way a callstream consumer settles a JetStream message: ack on success, nak with a
growing delay on a transient error, dead-letter what can never succeed.

``consume`` runs a handler (a plain function of one message) over a durable pull consumer, one
message at a time in stream order. It is meant to run under the :class:`Supervisor`: it binds its
consumer (declaring it when missing, so a deleted consumer comes back on the restart) and lets a
failed fetch escape, so a broken subscription is rebuilt rather than retried forever in place.

Dead letters go to ``dlq.<consumer>`` with the original subject, sequence, headers and bytes, the
error and the delivery count; the DLQ entry's ``Nats-Msg-Id`` is derived from the original stream
sequence, so dead-lettering the same message twice stores it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import ConsumerSpec, DeadLetter, dlq_subject

from ._logging import get_logger
from ._streams import ensure_consumer
from ._supervisor import backoff_delay, wait_or_stop
from ._tracing import CONSUMER, TRACEPARENT, TRACESTATE, tracing

log = get_logger(__name__)

SETTLE_TIMEOUT_SECONDS = 5.0


class Unprocessable(Exception):
    """The message itself is at fault: the same bytes would fail the same way again. A handler
    raises it (or the consumer's ``is_poison`` says so) to have the message dead-lettered."""


@dataclass(frozen=True, slots=True)
class Redelivery:
    """Nak delays: ``first_delay`` for the first failed delivery, doubling up to ``max_delay``."""

    first_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, delivered: int) -> float:
        return backoff_delay(delivered, self.first_delay, self.max_delay)


async def dead_letter(js: JetStreamContext, msg: Msg, error: str, *, consumer: str) -> None:
    """Publish the message with its error to ``dlq.<consumer>`` (awaiting the ack), then
    terminate it. Raises when the DLQ cannot take it: the caller leaves the message for a later
    delivery (a nak) rather than lose it."""
    meta = msg.metadata
    original = {k: str(v) for k, v in (msg.headers or {}).items()}
    # The entry continues the message's trace: the span that gave up on it when tracing is on,
    # else the context the message came with.
    headers = {"Nats-Msg-Id": f"dlq-{consumer}-{meta.stream}-{meta.sequence.stream}"}
    for name in (TRACEPARENT, TRACESTATE):
        if name in original:
            headers[name] = original[name]
    if tracing.on:
        tracing.inject(headers)
    letter = DeadLetter(
        consumer=consumer,
        subject=msg.subject,
        stream_sequence=meta.sequence.stream,
        headers=original,
        data=msg.data,
        error=error[:2000],
        delivery_count=meta.num_delivered,
        failed_at=datetime.now(UTC),
    )
    await js.publish(
        dlq_subject(consumer),
        msgspec.json.encode(letter),
        headers=headers,
        timeout=SETTLE_TIMEOUT_SECONDS,
    )
    await msg.term()


async def nak(msg: Msg, delay: float) -> bool:
    """Ask for a redelivery after ``delay`` seconds. A nak lost with the connection costs nothing:
    the message comes back after the consumer's ``ack_wait`` anyway. False when it was lost."""
    try:
        await msg.nak(delay=delay)
    except Exception as exc:
        log.warning("nak not sent, the message returns after ack_wait", error=type(exc).__name__)
        return False
    return True


async def ack(msg: Msg) -> bool:
    """Acknowledge and wait for the server's confirmation. False when it was lost (the message is
    redelivered; every consumer is idempotent, so that costs a repeat, never a loss)."""
    try:
        await msg.ack_sync(timeout=SETTLE_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("ack not confirmed, the message may be redelivered", error=type(exc).__name__)
        return False
    return True


async def give_up(js: JetStreamContext, msg: Msg, error: str, *, consumer: str, retry_delay: float) -> bool:
    """Dead-letter ``msg``; when the DLQ cannot take it, nak it for a later try. True when written."""
    try:
        await dead_letter(js, msg, error, consumer=consumer)
    except Exception as exc:
        log.warning("dead letter not written, retrying later", consumer=consumer, error=type(exc).__name__)
        await nak(msg, retry_delay)
        return False
    # The reason's kind only: its text may quote the data (asyncpg quotes a rejected value), and
    # the DLQ entry keeps it whole.
    log.warning(
        "message dead-lettered",
        consumer=consumer,
        subject=msg.subject,
        seq=msg.metadata.sequence.stream,
        reason=error.split(":")[0][:100],
    )
    return True


Handler = Callable[[Msg], Awaitable[object]]


async def bind(js: JetStreamContext, spec: ConsumerSpec) -> JetStreamContext.PullSubscription:
    """The pull subscription of ``spec``'s durable consumer, declared first when it is missing."""
    try:
        await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:
        log.warning("consumer missing, declaring it", consumer=spec.durable)
        await ensure_consumer(js, spec)
    return await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``settle`` did with one message."""

    name: str  # handled, dead_lettered, retry

    @property
    def transient(self) -> bool:
        return self.name == "retry"


HANDLED, DEAD_LETTERED, RETRY = Outcome("handled"), Outcome("dead_lettered"), Outcome("retry")


async def settle(
    js: JetStreamContext,
    msg: Msg,
    handler: Handler,
    spec: ConsumerSpec,
    *,
    redelivery: Redelivery,
    is_poison: Callable[[BaseException], bool] = lambda _: False,
) -> Outcome:
    """Run ``handler`` on one message and settle it: ack, dead-letter, or nak with delay.

    ``Unprocessable`` or an error ``is_poison`` accepts dead-letters at once. Any other error is
    taken as transient and naks; on the consumer's last allowed delivery the message is
    dead-lettered instead, so JetStream's ``max_deliver`` never drops one silently. That last
    delivery is dead-lettered before the handler runs when the ones before it were never settled
    (the process died or stalled handling it: a message that makes it run out of memory)."""
    if tracing.on:  # the handling continues the message's trace
        with tracing.span(
            f"{spec.durable} process",
            kind=CONSUMER,
            parent=tracing.extract(msg.headers),
            attributes={"messaging.system": "nats", "messaging.destination.name": msg.subject},
        ) as span:
            outcome = await _settle(js, msg, handler, spec, redelivery=redelivery, is_poison=is_poison)
            span.set_attribute("callstream.outcome", outcome.name)
            return outcome
    return await _settle(js, msg, handler, spec, redelivery=redelivery, is_poison=is_poison)


async def _settle(
    js: JetStreamContext,
    msg: Msg,
    handler: Handler,
    spec: ConsumerSpec,
    *,
    redelivery: Redelivery,
    is_poison: Callable[[BaseException], bool],
) -> Outcome:
    # JetStream delivers a message at most max_deliver times, then drops it without a word: its
    # last delivery goes to the DLQ instead, whatever became of the ones before (a nak, or a
    # handler that died or stalled on it: a message that makes the process run out of memory).
    delivered = msg.metadata.num_delivered
    if spec.max_deliver > 0 and delivered >= spec.max_deliver:
        reason = f"gave up after {delivered} deliveries (its handler kept failing, or died or stalled on it)"
        written = await give_up(js, msg, reason, consumer=spec.durable, retry_delay=redelivery.max_delay)
        return DEAD_LETTERED if written else RETRY
    try:
        await handler(msg)
    except Exception as exc:
        if isinstance(exc, Unprocessable) or is_poison(exc):
            written = await give_up(js, msg, f"{type(exc).__name__}: {exc}", consumer=spec.durable, retry_delay=1.0)
            return DEAD_LETTERED if written else RETRY
        log.warning("message not handled, retrying later", consumer=spec.durable, error=type(exc).__name__)
        await nak(msg, redelivery.delay(delivered))
        return RETRY
    await ack(msg)
    return HANDLED


async def consume(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    stopping: asyncio.Event,
    *,
    batch: int = 64,
    fetch_timeout: float = 1.0,
    redelivery: Redelivery | None = None,
    is_poison: Callable[[BaseException], bool] = lambda _: False,
    recover: Callable[[], Awaitable[None]] | None = None,
    observe: Callable[[Outcome], object] | None = None,
) -> None:
    """Fetch and settle messages of ``spec`` in order until ``stopping``; ``observe`` is told each
    message's outcome (a metric).

    After a transient failure the rest of the fetched batch is released with the failed one's
    delay (in order, after it) and ``recover()`` is awaited before fetching more (e.g. until the database
    answers again): an outage then costs each message one delivery, not one per retry interval.
    Without ``recover``, the consumer pauses for the first nak delay."""
    redelivery = redelivery or Redelivery()
    sub = await bind(js, spec)
    try:
        while not stopping.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=fetch_timeout)
            except (nats.errors.TimeoutError, TimeoutError):  # nothing to fetch
                continue
            for i, msg in enumerate(msgs):
                outcome = await settle(js, msg, handler, spec, redelivery=redelivery, is_poison=is_poison)
                if observe is not None:
                    observe(outcome)
                if outcome.transient:
                    # The rest come back with the same delay, after the one that failed and in
                    # order: a later message applied first would be overwritten by an older one.
                    delay = redelivery.delay(msg.metadata.num_delivered)
                    for later in msgs[i + 1 :]:
                        await nak(later, delay)
                    if recover is not None:
                        await recover()
                    else:
                        await wait_or_stop(stopping, redelivery.first_delay)
                    break
    finally:
        try:
            await sub.unsubscribe()
        except Exception as exc:  # the connection is gone already
            log.debug("unsubscribe failed", error=type(exc).__name__)
