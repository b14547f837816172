"""Re-derive stored messages of an older metadata shape from the raw data they keep.

Every message keeps what the provider sent in its metadata (Gong: ``raw_call_data`` and
``transcript_data``; Fathom: ``raw_session_data``), so a mapping change can reach every stored
message without ``CALLS_RAW`` (whose retention is 30 days by default): the raw data is mapped again
and written through the same store as a delivery, observed at the time the stored version was, so

- the row gets the new shape with ``version + 1`` and a ``MessageUpserted`` ``updated`` goes out
  through the outbox (subscribers learn of it like of any change; contacts follow the store);
- a newer version stored meanwhile (a live delivery) is never overwritten: the store refuses older;
- running it again finds nothing: re-derived rows carry ``metadata_version``.

One cost: the raw keys come back from jsonb re-serialised (its key order and spacing), and the
content hash covers the metadata's bytes, so the first later delivery of a re-derived call's raw
bytes (a re-pull inside Gong's lookback, a replay) writes the same content once more as ``updated``
with ``version + 1``; nothing a reader sees changes, and from then on the hashes agree again.

It runs by itself: a non-critical worker of every replica looks for old-shape rows every
``CALLSTREAM_NORMALIZER_REDERIVE_SECONDS`` (a partial index makes that look cheap once none are
left) and one replica at a time (an advisory lock per batch) re-derives them in batches; so a deploy brings
every stored message to the new shape with no step an operator could forget, and rows a replica of
the previous release writes during a rolling deploy are caught by the next look. ``callstream-
normalizer rederive`` does the same once, in the foreground, and prints what it did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import msgspec

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, HostAllowList, RawCall
from callstream.runtime import ServiceRuntime, create_pool, get_logger

from ._mapped import MappedMessage, UnmappableError
from ._mapping import map_raw_call
from ._settings import Settings
from ._store import store_batch

log = get_logger(__name__)

# One replica re-derives at a time (any value unique to this job; "rederive" in ASCII).
REDERIVE_LOCK = 0x72_65_64_65_72_69_76_65
# Rows written before metadata carried a version: the only older shape there is. The predicate is
# the one of the partial index ``messages_metadata_unversioned`` (migration 0004), so the periodic
# look reads the index, not every row's metadata. A later shape adds its own index and predicate.
_OLD_SHAPE = """
select id, workspace_id, source, external_id, coalesce(integration_id, '') as integration_id,
       coalesce(source_updated_at, updated_at) as observed_at,
       (message_metadata -> 'raw_call_data')::text as raw_call,
       (message_metadata -> 'transcript_data')::text as transcript,
       (message_metadata -> 'raw_session_data')::text as raw_session
from messages
where (message_metadata ->> 'metadata_version') is null and id > $1 and id <> all($3::uuid[])
order by id
limit $2
"""
_ENCODE = msgspec.json.Encoder()
_NO_ID = UUID(int=0)


@dataclass
class RederiveReport:
    read: int = 0
    rederived: int = 0  # rows written in the new shape (one MessageUpserted ``updated`` each)
    unchanged: int = 0  # the store refused or had nothing to change (e.g. a newer version stored meanwhile)
    without_raw: int = 0  # no raw data kept: only ``replay`` from CALLS_RAW can re-derive these
    unmappable: int = 0
    busy: bool = False  # another replica holds the job


def raw_call_of(row: asyncpg.Record) -> bytes | None:
    """The ``RawCall`` the stored row was mapped from, rebuilt from its raw keys; ``None`` when the
    row keeps none."""
    if row["source"] == "gong":
        if row["raw_call"] in (None, "null"):
            return None
        transcript = row["transcript"] if row["transcript"] is not None else "null"
        payload = b'{"call":' + row["raw_call"].encode() + b',"transcript":' + transcript.encode() + b"}"
    else:
        if row["raw_session"] in (None, "null"):
            return None
        payload = row["raw_session"].encode()
    observed: datetime = row["observed_at"]
    return _ENCODE.encode(
        RawCall(
            event_id=f"rederive-{row['id']}",
            source=row["source"],
            workspace_id=row["workspace_id"],
            integration_id=row["integration_id"],
            external_id=row["external_id"],
            origin="pull",
            received_at=observed.astimezone(UTC),
            payload=msgspec.Raw(payload),
        )
    )


async def rederive(
    pool: asyncpg.Pool,
    links: HostAllowList = DEFAULT_LINK_ALLOW_LIST,
    batch: int = 100,
    stopping: asyncio.Event | None = None,
    left: set[UUID] | None = None,
) -> RederiveReport:
    """Re-derive every old-shape row, ``batch`` at a time, unless another replica is at it.
    ``stopping``: set, the job ends after the batch in hand. ``left``: the rows earlier runs of
    this process could not re-derive (no raw data, unmappable, refused by the store), skipped and
    added to: the periodic job would otherwise read, map and warn about them every few minutes
    for ever; a new process (a deploy with a fix) tries them once again.

    Each batch is one transaction holding the job's advisory lock (transaction-level, so a
    connection is held per batch only, never for the whole job, and the consumer's connections are
    not starved): the read and the writes of a batch happen under the lock, so another replica
    never reads rows a batch is about to rewrite, and skips them once it has committed."""
    report = RederiveReport()
    after = _NO_ID
    while not (stopping is not None and stopping.is_set()):
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("select pg_try_advisory_xact_lock($1)", REDERIVE_LOCK):
                report.busy = True
                break
            rows = await conn.fetch(_OLD_SHAPE, after, batch, list(left) if left else [])
            if not rows:
                break
            after = rows[-1]["id"]
            report.read += len(rows)
            mapped: list[MappedMessage] = []
            for row in rows:
                data = raw_call_of(row)
                if data is None:
                    report.without_raw += 1
                    continue
                try:
                    mapped.append(map_raw_call(data, links))
                except UnmappableError as exc:
                    report.unmappable += 1
                    log.warning("stored message cannot be re-derived", message_id=str(row["id"]), error=str(exc))
            written = await store_batch(conn, mapped) if mapped else []  # a savepoint in this transaction
        report.rederived += len(written)
        report.unchanged += len(mapped) - len(written)
        if left is not None:
            left.update({r["id"] for r in rows} - {UUID(e.message_id) for e in written})
    if report.read:
        log.info("messages re-derived", **asdict(report))
    return report


def rederive_job(settings: Settings) -> Callable[[ServiceRuntime], Awaitable[None]]:
    """The periodic worker's job (``runtime.add_worker(..., periodic(job, seconds))``)."""

    left: set[UUID] = set()  # for the life of the process: rows its runs could not re-derive

    async def job(runtime: ServiceRuntime) -> None:
        await rederive(runtime.db, settings.link_allow_list, settings.batch_size, runtime.stopping, left)

    return job


async def run_rederive(settings: Settings) -> dict[str, int | bool]:
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=2)
    try:
        report = await rederive(pool, settings.link_allow_list, settings.batch_size)
    finally:
        await pool.close()
    return asdict(report)
