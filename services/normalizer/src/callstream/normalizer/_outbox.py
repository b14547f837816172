"""The outbox relay: publishes ``MessageUpserted`` rows to ``messages.upserted.<source>`` in id
order (= commit order, see ``_store.OUTBOX_ORDER_LOCK``), ``Nats-Msg-Id`` = ``outbox-<id>``.

Woken by ``LISTEN/NOTIFY``; also sweeps on a timer, so rows whose notification was missed (relay
restarting, database failover) are published too. With several replicas, one relays at a time
(a transaction-scoped advisory lock keeps the order), and the rows are taken ``FOR UPDATE SKIP
LOCKED`` so no row is ever in two publishers' hands. A crash between the publish and the commit
republishes the same ids, which JetStream's duplicate window drops.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from callstream.runtime import ServiceRuntime, get_logger

from ._consumer import sleep_unless_stopping
from ._errors import retry_delay
from ._metrics import EVENTS_PUBLISHED
from ._settings import Settings
from ._store import OUTBOX_CHANNEL

log = get_logger(__name__)

RELAY_LOCK = 0x6E_6F_72_72_65_6C_61_79
PUBLISH_ACK_TIMEOUT_SECONDS = 10.0

# Takes and marks in one statement (migrations/0002_store_functions.sql): a relay cycle is three
# round trips.
_TAKE_AND_MARK = "select * from normalizer_take_outbox($1, $2)"
_PURGE = "delete from outbox where published_at < now() - make_interval(secs => $1)"


def msg_id(outbox_id: int) -> str:
    return f"outbox-{outbox_id}"


async def publish_pending(conn: asyncpg.Connection, js: JetStreamContext, limit: int) -> int:
    """Publish up to ``limit`` unpublished rows; return how many (0 when another replica relays)."""
    async with conn.transaction():
        rows = sorted(await conn.fetch(_TAKE_AND_MARK, limit, RELAY_LOCK), key=lambda row: row["id"])
        if not rows:
            return 0
        futures = [
            await js.publish_async(row["subject"], row["payload"], headers={"Nats-Msg-Id": msg_id(row["id"])})
            for row in rows
        ]
        try:
            async with asyncio.timeout(PUBLISH_ACK_TIMEOUT_SECONDS):
                await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    EVENTS_PUBLISHED.inc(len(rows))
    return len(rows)


async def run_outbox_relay(runtime: ServiceRuntime, settings: Settings) -> None:
    await runtime.broker.wait_connected()
    js = runtime.broker.nc.jetstream()
    wake = asyncio.Event()

    def on_notify(*_: Any) -> None:
        wake.set()

    failures = 0
    last_purge = 0.0
    while not runtime.stopping.is_set():
        try:
            async with runtime.db.acquire() as conn:
                await conn.add_listener(OUTBOX_CHANNEL, on_notify)
                conn.add_termination_listener(on_notify)  # a lost connection wakes the loop to reconnect
                try:
                    while not runtime.stopping.is_set():
                        wake.clear()
                        published = await publish_pending(conn, js, settings.outbox_batch_size)
                        failures = 0
                        if published >= settings.outbox_batch_size:
                            continue
                        if time.monotonic() - last_purge > 60:
                            await conn.execute(_PURGE, settings.outbox_retention_hours * 3600)
                            last_purge = time.monotonic()
                        waiter = asyncio.ensure_future(wake.wait())
                        stopper = asyncio.ensure_future(runtime.stopping.wait())
                        await asyncio.wait(
                            {waiter, stopper}, timeout=settings.outbox_sweep_seconds, return_when="FIRST_COMPLETED"
                        )
                        waiter.cancel()
                        stopper.cancel()
                        if conn.is_closed():
                            break
                finally:
                    if not conn.is_closed():
                        await conn.remove_listener(OUTBOX_CHANNEL, on_notify)
                    conn.remove_termination_listener(on_notify)
        except Exception as exc:
            failures += 1
            log.warning("outbox relay failed, retrying", error=type(exc).__name__, detail=str(exc)[:200])
            await sleep_unless_stopping(runtime.stopping, retry_delay(failures, 0.2, 5.0))
