"""``features.linked`` into ``features`` and ``message_features``.

A link may name a message that has not arrived yet: it is kept with its ``(source, external_id)``
and filled in when the message is created (by the store, in the message's transaction, and by a
periodic sweep that closes the race of a link and its message committing at the same moment).
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from callstream.contracts import FEATURES, NORMALIZER_FEATURES_CONSUMER, FeatureLinked
from callstream.runtime import ServiceRuntime, get_logger

from ._consumer import sleep_unless_stopping
from ._dlq import dead_letter
from ._errors import is_poison, retry_delay
from ._metrics import FEATURE_LINKS
from ._settings import Settings

log = get_logger(__name__)
_DECODER = msgspec.json.Decoder(FeatureLinked)

_MESSAGE_BY_ID = "select source, external_id from messages where id = $1 and workspace_id = $2"
_UPSERT_FEATURE = """
insert into features as f (workspace_id, id, name) values ($1, $2, $3)
on conflict (workspace_id, id) do update set name = excluded.name, updated_at = now()
where excluded.name is not null and f.name is distinct from excluded.name
"""
_LINK = """
insert into message_features as mf (workspace_id, feature_id, source, external_id, message_id)
values ($1, $2, $3, $4,
        (select id from messages where workspace_id = $1 and source = $3 and external_id = $4))
on conflict (workspace_id, feature_id, source, external_id) do update set message_id = excluded.message_id
where mf.message_id is null and excluded.message_id is not null
"""
SWEEP_PENDING = """
update message_features mf set message_id = m.id
from messages m
where mf.message_id is null
  and m.workspace_id = mf.workspace_id and m.source = mf.source and m.external_id = mf.external_id
"""


class UnusableLink(ValueError):
    pass


async def store_link(conn: asyncpg.Connection, link: FeatureLinked) -> None:
    ref = link.message
    async with conn.transaction():
        if ref.message_id is not None:
            try:
                message_id = uuid.UUID(ref.message_id)
            except ValueError:
                raise UnusableLink(f"message_id {ref.message_id!r} is not a message id") from None
            row = await conn.fetchrow(_MESSAGE_BY_ID, message_id, link.workspace_id)
            if row is None:
                raise UnusableLink("no message with that id in the workspace")
            source, external_id = row["source"], row["external_id"]
        elif ref.source is not None and ref.external_id:
            source, external_id = ref.source, ref.external_id
        else:
            raise UnusableLink("the message is named neither by id nor by (source, external_id)")
        await conn.execute(_UPSERT_FEATURE, link.workspace_id, link.feature_id, link.feature_name)
        await conn.execute(_LINK, link.workspace_id, link.feature_id, source, external_id)


async def handle_feature_msg(pool: asyncpg.Pool, js: JetStreamContext, msg: Msg) -> bool:
    """Store one link; returns False on a transient failure (the message was nak'ed)."""
    consumer = NORMALIZER_FEATURES_CONSUMER.durable
    try:
        link = _DECODER.decode(msg.data)
        async with pool.acquire() as conn:
            await store_link(conn, link)
    except (msgspec.DecodeError, msgspec.ValidationError, UnusableLink) as exc:
        await dead_letter(js, msg, f"unusable feature link: {exc}", consumer=consumer)
        FEATURE_LINKS.labels("dead_lettered").inc()
        return True
    except Exception as exc:
        if is_poison(exc):
            await dead_letter(js, msg, f"rejected by the database: {type(exc).__name__}: {exc}", consumer=consumer)
            FEATURE_LINKS.labels("dead_lettered").inc()
            return True
        delivered = msg.metadata.num_delivered
        if delivered >= NORMALIZER_FEATURES_CONSUMER.max_deliver:
            await dead_letter(js, msg, f"gave up after {delivered} deliveries: {exc}", consumer=consumer)
            return True
        await msg.nak(delay=retry_delay(delivered, 1.0, 60.0))
        log.warning("feature link not stored, retrying", error=type(exc).__name__)
        return False
    await msg.ack_sync()
    FEATURE_LINKS.labels("stored").inc()
    return True


async def run_feature_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    await runtime.broker.wait_connected()
    js = runtime.broker.js
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_FEATURES_CONSUMER.durable, stream=FEATURES)
    failures = 0
    while not runtime.stopping.is_set():
        try:
            msgs = await sub.fetch(100, timeout=settings.fetch_timeout_seconds)
        except nats.errors.TimeoutError:
            continue
        except Exception as exc:
            failures += 1
            log.warning("feature fetch failed", error=type(exc).__name__)
            await sleep_unless_stopping(runtime.stopping, retry_delay(failures, 0.5, 10.0))
            continue
        failures = 0
        for i, msg in enumerate(msgs):
            if not await handle_feature_msg(runtime.db, js, msg):
                for later in msgs[i + 1 :]:  # back soon, in order, without waiting for ack_wait
                    await later.nak(delay=1.0)
                await sleep_unless_stopping(runtime.stopping, 1.0)
                break


async def run_pending_link_sweep(runtime: ServiceRuntime, settings: Settings) -> None:
    while not runtime.stopping.is_set():
        await sleep_unless_stopping(runtime.stopping, settings.link_sweep_seconds)
        try:
            await runtime.db.execute(SWEEP_PENDING)
        except Exception as exc:
            log.warning("pending link sweep failed", error=type(exc).__name__)
