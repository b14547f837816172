"""The durable consumer of ``sync.events.*``: apply each event in its own transaction, then ack.

Applying is idempotent (see ``SyncStore.apply_progress``/``apply_finished``), so JetStream's
at-least-once delivery is enough. It runs on the runtime's one consumer loop: a payload that can
never be read goes to ``dlq.scheduler``; a database failure naks the event and the consumer
waits for the database before fetching more, so an outage of any length costs each event one
delivery, not one per retry interval (before, ten deliveries 2 s apart dropped the events of a
~20 s outage).
"""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from callstream.contracts import SCHEDULER_CONSUMER
from callstream.runtime import (
    HANDLED,
    Redelivery,
    Unprocessable,
    consume,
    get_logger,
    settle,
    wait_for_postgres,
)

from ._scheduler import Scheduler

log = get_logger(__name__)

FETCH_BATCH = 64
FETCH_TIMEOUT_SECONDS = 1.0
REDELIVERY = Redelivery(first_delay=1.0, max_delay=30.0)


async def _apply(scheduler: Scheduler, msg: Msg) -> bool:
    try:
        return await scheduler.apply_event(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"{type(exc).__name__}: {exc}") from exc


async def handle_message(scheduler: Scheduler, js: JetStreamContext, msg: Msg) -> str:
    """Process one delivery; returns what was done (applied, unchanged, dead_lettered, retry)."""
    changed: list[bool] = []

    async def apply(m: Msg) -> None:
        changed.append(await _apply(scheduler, m))

    outcome = await settle(js, msg, apply, SCHEDULER_CONSUMER, redelivery=REDELIVERY)
    if outcome is HANDLED:
        return "applied" if changed[0] else "unchanged"
    return outcome.name


async def consume_events(
    scheduler: Scheduler, js: JetStreamContext, stopping: asyncio.Event, pool: asyncpg.Pool
) -> None:
    """The worker: apply sync events until the service stops (under the runtime's supervisor)."""
    await consume(
        js,
        SCHEDULER_CONSUMER,
        lambda msg: _apply(scheduler, msg),
        stopping,
        batch=FETCH_BATCH,
        fetch_timeout=FETCH_TIMEOUT_SECONDS,
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(pool, stopping),
    )
