"""``features.linked`` and ``features.unlinked`` into ``features`` and ``message_features``.

A link may name a message that has not arrived yet: it is kept with its ``(source, external_id)``
and filled in when the message is created (by the store, in the message's transaction, and by a
periodic sweep that closes the race of a link and its message committing at the same moment).

Links and unlinks come through one consumer in stream order, so a link, its unlink and a link
again end linked. An unlink deletes the row (unlinking what is not linked changes nothing) and
moves the feature's ``updated_at``: the linker derives its events' ``Nats-Msg-Id`` from the link's
stored state, and this is what tells "linked, unlinked, linked again" from one link retried.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import FEATURES_UNLINKED, NORMALIZER_FEATURES_CONSUMER, FeatureLinked, FeatureUnlinked
from callstream.runtime import (
    HANDLED,
    Outcome,
    Redelivery,
    ServiceRuntime,
    Unprocessable,
    consume,
    get_logger,
    settle,
    wait_for_postgres,
)

from ._errors import is_poison
from ._metrics import FEATURE_LINKS
from ._settings import Settings

log = get_logger(__name__)
_DECODER = msgspec.json.Decoder(FeatureLinked)
_UNLINK_DECODER = msgspec.json.Decoder(FeatureUnlinked)
REDELIVERY = Redelivery(first_delay=1.0, max_delay=60.0)
# Links are made by people clicking (the linker's PUT/DELETE) and expected in the GET within a
# second: a long-poll fetch hands its batch over only when it is full or its time is up, so this
# is how long a link can wait while the consumer is idle. An idle pull request every quarter
# second costs next to nothing.
INTERACTIVE_FETCH_SECONDS = 0.25

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
_UNLINK = """
with gone as (
    delete from message_features where workspace_id = $1 and feature_id = $2 and source = $3 and external_id = $4
    returning 1
)
update features set updated_at = clock_timestamp()
where workspace_id = $1 and id = $2 and exists (select 1 from gone)
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


async def store_unlink(conn: asyncpg.Connection, unlink: FeatureUnlinked) -> None:
    """Delete the link; a message named by an id that no longer exists has no links left (they go
    with it), so that is nothing to do rather than an error."""
    ref = unlink.message
    if ref.message_id is not None:
        try:
            message_id = uuid.UUID(ref.message_id)
        except ValueError:
            raise UnusableLink(f"message_id {ref.message_id!r} is not a message id") from None
        row = await conn.fetchrow(_MESSAGE_BY_ID, message_id, unlink.workspace_id)
        if row is None:
            return
        source, external_id = row["source"], row["external_id"]
    elif ref.source is not None and ref.external_id:
        source, external_id = ref.source, ref.external_id
    else:
        raise UnusableLink("the message is named neither by id nor by (source, external_id)")
    await conn.execute(_UNLINK, unlink.workspace_id, unlink.feature_id, source, external_id)


async def _store_feature_msg(pool: asyncpg.Pool, msg: Msg) -> None:
    try:
        async with pool.acquire() as conn:
            if msg.subject == FEATURES_UNLINKED:
                await store_unlink(conn, _UNLINK_DECODER.decode(msg.data))
            else:
                await store_link(conn, _DECODER.decode(msg.data))
    except (msgspec.DecodeError, msgspec.ValidationError, UnusableLink) as exc:
        raise Unprocessable(f"unusable feature link or unlink: {exc}") from exc
    except Exception as exc:
        if is_poison(exc):
            raise Unprocessable(f"rejected by the database: {type(exc).__name__}: {exc}") from exc
        raise


def _counted(outcome: Outcome) -> Outcome:
    FEATURE_LINKS.labels("stored" if outcome is HANDLED else outcome.name).inc()
    return outcome


async def handle_feature_msg(pool: asyncpg.Pool, js: JetStreamContext, msg: Msg) -> bool:
    """Store one link; returns False on a transient failure (the message was nak'ed)."""
    outcome = await settle(
        js, msg, lambda m: _store_feature_msg(pool, m), NORMALIZER_FEATURES_CONSUMER, redelivery=REDELIVERY
    )
    return not _counted(outcome).transient


async def run_feature_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker (under the runtime's supervisor): links in stream order; after a transient
    failure, the rest of the batch comes back in order once the database answers."""
    await runtime.broker.wait_connected()
    await widen_filter(runtime.broker.js)
    await consume(
        runtime.broker.js,
        NORMALIZER_FEATURES_CONSUMER,
        lambda msg: _store_feature_msg(runtime.db, msg),
        runtime.stopping,
        batch=100,
        fetch_timeout=min(settings.fetch_timeout_seconds, INTERACTIVE_FETCH_SECONDS),
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(runtime.db, runtime.stopping),
        observe=_counted,
    )


async def widen_filter(js: JetStreamContext) -> None:
    """A consumer declared before unlinks existed filters on ``features.linked`` only: its filter
    is moved to the contract's in place (everything else an operator tuned is kept), else unlinks
    would sit in the stream unread."""
    spec = NORMALIZER_FEATURES_CONSUMER
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:
        return  # consume() declares it as the contract says
    config = info.config
    if config.filter_subject == spec.filter_subject and not config.filter_subjects:
        return
    log.info("feature consumer filter widened", was=config.filter_subject, now=spec.filter_subject)
    config.filter_subject = spec.filter_subject
    config.filter_subjects = None
    await js.add_consumer(spec.stream, config)  # an existing durable: updated in place


async def sweep_pending_links(runtime: ServiceRuntime) -> None:
    await runtime.db.execute(SWEEP_PENDING)
