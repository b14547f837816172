"""The durable consumer of ``sync.events.*``: apply each event in its own transaction, then ack.

Applying is idempotent (see ``SyncStore.apply_progress``/``apply_finished``), so JetStream's
at-least-once delivery is enough. A payload that can never be read goes to ``dlq.scheduler`` and
is terminated; a database failure naks with a delay so the event comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from callstream.contracts import SCHEDULER_CONSUMER, DeadLetter, dlq_subject
from callstream.runtime import ensure_consumer, get_logger

from ._scheduler import Scheduler

log = get_logger(__name__)

FETCH_BATCH = 64
FETCH_TIMEOUT_SECONDS = 1.0
RETRY_DELAY_SECONDS = 2.0
DLQ_SUBJECT = dlq_subject(SCHEDULER_CONSUMER.durable)


async def handle_message(scheduler: Scheduler, js: JetStreamContext, msg: Msg) -> str:
    """Process one delivery; returns what was done (applied, unchanged, dead_lettered, retry)."""
    try:
        changed = await scheduler.apply_event(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return await _dead_letter(js, msg, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        log.warning("sync event not applied, will retry", error=type(exc).__name__)
        await msg.nak(delay=RETRY_DELAY_SECONDS)
        return "retry"
    await msg.ack_sync()
    return "applied" if changed else "unchanged"


async def _dead_letter(js: JetStreamContext, msg: Msg, error: str) -> str:
    meta = msg.metadata
    letter = DeadLetter(
        consumer=SCHEDULER_CONSUMER.durable,
        subject=msg.subject,
        stream_sequence=meta.sequence.stream,
        headers=dict(msg.headers or {}),
        data=msg.data,
        error=error[:2000],
        delivery_count=meta.num_delivered,
        failed_at=datetime.now(UTC),
    )
    try:
        await js.publish(
            DLQ_SUBJECT,
            msgspec.json.encode(letter),
            headers={"Nats-Msg-Id": f"dlq-{SCHEDULER_CONSUMER.durable}-{meta.sequence.stream}"},
        )
    except Exception as exc:
        log.warning("dead letter not published, will retry", error=type(exc).__name__)
        await msg.nak(delay=RETRY_DELAY_SECONDS)
        return "retry"
    log.error("unreadable sync event dead-lettered", subject=msg.subject, stream_sequence=meta.sequence.stream)
    await msg.term()
    return "dead_lettered"


async def consume_events(scheduler: Scheduler, js: JetStreamContext, stopping: asyncio.Event) -> None:
    await ensure_consumer(js, SCHEDULER_CONSUMER)
    sub = await js.pull_subscribe_bind(durable=SCHEDULER_CONSUMER.durable, stream=SCHEDULER_CONSUMER.stream)
    try:
        while not stopping.is_set():
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing came
                continue
            except Exception as exc:  # broker away: nats-py reconnects, we just wait
                log.warning("sync events fetch failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                continue
            for msg in messages:
                try:
                    await handle_message(scheduler, js, msg)
                except Exception as exc:  # an ack or nak lost with the connection: it is redelivered
                    log.warning("sync event acknowledgement failed", error=type(exc).__name__)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
