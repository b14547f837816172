"""``datapoints.recorded`` into ``data_points``: one row per (message, key, feature, extractor name).

A newer extractor version replaces the stored value, an older one never does (a redelivery, or a
late retry of an old run); the same version with other content replaces it (the extractor
corrected itself); the same event again changes nothing. A data point of a message that is gone
(erased, or another workspace's) can never be stored: it is dead-lettered, as a feature link is.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from callstream.contracts import NORMALIZER_DATAPOINTS_CONSUMER, DataPointRecorded, extractor_version_order
from callstream.runtime import (
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
from ._settings import Settings

__all__ = ["DATA_POINTS", "StoreResult", "handle_data_point_msg", "run_data_point_consumer", "store_data_point"]

log = get_logger(__name__)
_DECODER = msgspec.json.Decoder(DataPointRecorded)
REDELIVERY = Redelivery(first_delay=1.0, max_delay=60.0)

DATA_POINTS = Counter(
    "callstream_normalizer_data_points_total",
    "datapoints.recorded handled, by outcome (stored, unchanged, dead_lettered, retry)",
    ["outcome"],
)

# ``for share``: a tombstone being made of the message (which deletes its data points) finishes
# first or waits, so no point lands on a tombstone after its points were erased.
_MESSAGE = "select deleted_at from messages where id = $1 and workspace_id = $2 for share"
_ERASED = "select true from normalizer_erased_messages where message_id = $1"  # migrations/0011
_FEATURE = "insert into features (workspace_id, id) values ($1, $2) on conflict do nothing"
# Replaces only what a newer version (or the same version's later correction) wrote; returns the
# row when it was written, nothing when the stored one stands.
_UPSERT = """
insert into data_points as d (
    workspace_id, message_id, feature_id, data_point_key, data_point_category,
    numeric_value, integer_value, text_value, evidence_t, evidence_quote,
    extractor_name, extractor_version, extractor_version_order, event_id, recorded_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
on conflict (message_id, data_point_key, feature_id, extractor_name) do update set
    data_point_category = excluded.data_point_category,
    numeric_value = excluded.numeric_value,
    integer_value = excluded.integer_value,
    text_value = excluded.text_value,
    evidence_t = excluded.evidence_t,
    evidence_quote = excluded.evidence_quote,
    extractor_version = excluded.extractor_version,
    extractor_version_order = excluded.extractor_version_order,
    event_id = excluded.event_id,
    recorded_at = excluded.recorded_at,
    updated_at = now()
where excluded.extractor_version_order > d.extractor_version_order
   or (excluded.extractor_version_order = d.extractor_version_order
       and excluded.event_id <> d.event_id and excluded.recorded_at >= d.recorded_at)
returning (xmax = 0) as created
"""

StoreResult = str  # "created", "replaced" or "unchanged"


async def store_data_point(conn: asyncpg.Connection, point: DataPointRecorded) -> StoreResult:
    try:
        message_id = uuid.UUID(point.message_id)
    except ValueError:
        raise Unprocessable(f"message_id {point.message_id!r} is not a message id") from None
    order = extractor_version_order(point.extractor.version)
    evidence = point.evidence
    async with conn.transaction():
        message = await conn.fetchrow(_MESSAGE, message_id, point.workspace_id)
        if message is None:
            if await conn.fetchval(_ERASED, message_id):  # recorded just before its erasure: dropped
                return "unchanged"
            raise Unprocessable("no message with that id in the workspace")
        if message["deleted_at"] is not None:  # gone (its evidence would be transcript text): dropped
            return "unchanged"
        if point.feature_id is not None:
            await conn.execute(_FEATURE, point.workspace_id, point.feature_id)
        row = await conn.fetchrow(
            _UPSERT,
            point.workspace_id,
            message_id,
            point.feature_id,
            point.key,
            point.category,
            point.numeric_value,
            point.integer_value,
            point.text_value,
            None if evidence is None else evidence.t,
            None if evidence is None else evidence.quote,
            point.extractor.name,
            point.extractor.version,
            order,
            point.event_id,
            point.recorded_at,
        )
    if row is None:
        return "unchanged"
    return "created" if row["created"] else "replaced"


async def _store_msg(pool: asyncpg.Pool, msg: Msg) -> None:
    try:
        point = _DECODER.decode(msg.data)
        async with pool.acquire() as conn:
            result = await store_data_point(conn, point)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise Unprocessable(f"unusable data point: {exc}") from exc
    except Unprocessable:
        raise
    except Exception as exc:
        if is_poison(exc):
            raise Unprocessable(f"rejected by the database: {type(exc).__name__}: {exc}") from exc
        raise
    DATA_POINTS.labels("unchanged" if result == "unchanged" else "stored").inc()


def _counted(outcome: Outcome) -> Outcome:
    if outcome.name != "handled":  # stored and unchanged are counted by the handler
        DATA_POINTS.labels(outcome.name).inc()
    return outcome


async def handle_data_point_msg(pool: asyncpg.Pool, js: JetStreamContext, msg: Msg) -> bool:
    """Store one data point and settle it; False on a transient failure (the message was nak'ed)."""
    outcome = await settle(
        js, msg, lambda m: _store_msg(pool, m), NORMALIZER_DATAPOINTS_CONSUMER, redelivery=REDELIVERY
    )
    return not _counted(outcome).transient


async def run_data_point_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker (under the runtime's supervisor): data points in stream order, so of two
    versions of one run the later accepted is applied last."""
    await runtime.broker.wait_connected()
    await consume(
        runtime.broker.js,
        NORMALIZER_DATAPOINTS_CONSUMER,
        lambda msg: _store_msg(runtime.db, msg),
        runtime.stopping,
        batch=100,
        fetch_timeout=settings.fetch_timeout_seconds,
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(runtime.db, runtime.stopping),
        observe=_counted,
    )
