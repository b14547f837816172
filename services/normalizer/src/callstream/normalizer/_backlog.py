"""What waits in the normalizer, as gauges read every few seconds by the ``backlog`` worker (never
per message): its consumers' lag, its dead letters, and the outbox rows not yet published.

The outbox figures come from one query on the partial index of unpublished rows; with several
replicas each reports the same numbers (dashboards and alerts take ``max``)."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge

from callstream.contracts import (
    NORMALIZER_CONSUMER,
    NORMALIZER_DATAPOINTS_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    NORMALIZER_LISTINGS_CONSUMER,
)
from callstream.runtime import ServiceRuntime, backlog_worker, get_logger, periodic

from ._dlq import DLQ_SUBJECTS

log = get_logger(__name__)

OUTBOX_SECONDS = 15.0
QUERY_TIMEOUT_SECONDS = 5.0

OUTBOX_UNPUBLISHED = Gauge("callstream_normalizer_outbox_unpublished", "Outbox rows not yet published to MESSAGES")
OUTBOX_OLDEST_AGE = Gauge(
    "callstream_normalizer_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox row not yet published (0 when none waits)",
)
_UNPUBLISHED = (
    "select count(*) as n, coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as age"
    " from outbox where published_at is null"
)
# The database away or not migrated yet: readiness says so; the gauges keep their last value.
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def read_outbox(pool: asyncpg.Pool) -> None:
    row = await pool.fetchrow(_UNPUBLISHED, timeout=QUERY_TIMEOUT_SECONDS)
    if row is not None:
        OUTBOX_UNPUBLISHED.set(row["n"])
        OUTBOX_OLDEST_AGE.set(max(0.0, row["age"]))


async def _collect(runtime: ServiceRuntime) -> None:
    try:
        await read_outbox(runtime.db)
    except _TRANSIENT as exc:
        log.debug("outbox backlog not read this time", error=type(exc).__name__)


def add_backlog_workers(runtime: ServiceRuntime) -> None:
    runtime.add_worker(
        "backlog",
        backlog_worker(
            (
                NORMALIZER_CONSUMER,
                NORMALIZER_LISTINGS_CONSUMER,
                NORMALIZER_FEATURES_CONSUMER,
                NORMALIZER_DATAPOINTS_CONSUMER,
            ),
            DLQ_SUBJECTS,
        ),
        critical=False,
    )
    runtime.add_worker("outbox-backlog", periodic(_collect, OUTBOX_SECONDS), critical=False)
