"""The normalizer's part of an erasure (``erasures.requested`` in, ``erasures.finished.normalizer`` out).

The gateway asks (``DELETE /v1/integrations/{id}?erase=true``, ``DELETE /v1/workspaces/{id}``) and
keeps the job; each service erases what it keeps. Here that is, for the integrations of the request
(or the whole workspace):

1. The integrations are registered as erased (``normalizer_erased_integrations``) while a lock waits
   for every write to ``messages`` in flight: a raw call of theirs is either stored before (and
   erased below) or skipped by the table's trigger (``migrations/0011_erasures.sql``) for ever.
2. Messages are deleted in batches, one transaction each: their contacts' links and counts (a
   contact no call names any more goes), participants, feature links, data points, and the row
   itself, with a ``MessageDeleted`` (reason ``erased``, no provider call id) in the outbox.
   Rows, not tombstones: a tombstone keeps the provider's call id, which is among what is erased.
3. Customers no message and no contact names any more; for a workspace, everything else it has
   (features, pending links, settings, provider hosts).
4. Outbox rows that name an erased message (a ``MessageUpserted`` carries its call id and title).
5. The streams: ``calls.raw.*.<id>`` and ``calls.listed.*.<id>`` purged by subject; every event in
   ``CALLS_RAW`` (raw calls published before subjects had the integration's token), ``MESSAGES``,
   ``FEATURES``, ``DATAPOINTS``, ``SYNC_EVENTS`` and ``DLQ`` that names an erased message,
   integration or (for a workspace) the workspace is deleted, one by one (nats-server overwrites a
   deleted message's bytes).

Every step is idempotent and the counts are kept per step in ``normalizer_erasures``, so a crash
resumes the job (the request is redelivered) and the report counts each thing once. The messages
erased are remembered (``normalizer_erasure_items``) until their stream events are gone, then
forgotten with the job's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from callstream.contracts import (
    CALLS_RAW,
    DATAPOINTS,
    DLQ,
    FEATURES,
    MESSAGES,
    NORMALIZER_ERASURES_CONSUMER,
    SYNC_EVENTS,
    ErasureFinished,
    ErasureRequested,
    MessageDeleted,
    erasures_finished_subject,
)
from callstream.runtime import Redelivery, ServiceRuntime, Unprocessable, consume, get_logger, wait_for_postgres

from ._errors import is_poison
from ._settings import Settings
from ._tombstones import announce_deleted

log = get_logger(__name__)

__all__ = ["ErasureReport", "delete_event", "erase", "run_erasure_consumer"]

_DECODER = msgspec.json.Decoder(ErasureRequested)
_EVENT = msgspec.json.Encoder()
REDELIVERY = Redelivery(first_delay=5.0, max_delay=120.0)
BATCH = 500
# A stream read that delivers nothing for this long, this many times in a row, has stalled.
SCAN_WAIT_SECONDS = 5.0
SCAN_STALLS = 3
# Between two in-progress acks at most (the consumer's ack_wait is 60 s).
HEARTBEAT_SECONDS = 15.0

_START = """
insert into normalizer_erasures (erasure_id, scope, workspace_id, integration_ids, requested_at)
values ($1, $2, $3, $4, $5)
on conflict (erasure_id) do nothing
"""
# SHARE ROW EXCLUSIVE waits for every transaction writing messages and keeps new ones out until
# commit (a few milliseconds): afterwards the trigger sees the integrations in every statement.
_REGISTER_LOCK = "lock table messages in share row exclusive mode"
# Queued behind an autovacuum or an index build, the lock would hold every write to messages up
# behind it: give up after a few seconds (a transient error: the job is tried again).
_LOCK_TIMEOUT = "set local lock_timeout = '5s'"
_REGISTER = """
insert into normalizer_erased_integrations (integration_id, erasure_id)
select unnest($1::text[]), $2
on conflict (integration_id) do nothing
"""
_COUNTS = "select counts, finished_at from normalizer_erasures where erasure_id = $1 for update"
_SAVE_COUNTS = "update normalizer_erasures set counts = $2::jsonb where erasure_id = $1"
# Keyset over the primary key: each batch starts where the last ended, so the job reads the table
# once however many batches it takes (a crash starts again from the first id; what is gone is gone).
_NEXT_OF_INTEGRATIONS = """
select id, workspace_id, source, external_id, customer_id, version from messages
where id > $1 and workspace_id = $2 and integration_id = any($3::text[])
order by id limit $4
for update
"""
_NEXT_OF_WORKSPACE = """
select id, workspace_id, source, external_id, customer_id, version from messages
where id > $1 and workspace_id = $2
order by id limit $3
for update
"""
_CONTACTS_OF = "select distinct contact_id from contact_messages where message_id = any($1::uuid[])"
_CONTACT_LINKS = "select normalizer_store_contacts($1, '{}', '{}', '{}', '{}', '{}', '{}')"  # migrations/0004
_CONTACTS_LEFT = "select count(*) from contacts where id = any($1::uuid[])"
_REMEMBER = """
insert into normalizer_erasure_items (erasure_id, message_id, source, external_id, customer_id)
select $1, * from unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[])
on conflict do nothing
"""
_ERASED_MESSAGES = """
insert into normalizer_erased_messages (message_id, erasure_id) select unnest($1::uuid[]), $2
on conflict (message_id) do nothing
"""
_ORPHAN_CUSTOMERS = """
delete from customers c
where c.id in (select distinct customer_id from normalizer_erasure_items where erasure_id = $1 and customer_id is not null)
  and not exists (select 1 from messages m where m.customer_id = c.id)
  and not exists (select 1 from contacts k where k.customer_id = c.id)
"""
_WORKSPACE_REST = (
    ("contacts", "delete from contacts where workspace_id = $1"),
    ("customers", "delete from customers where workspace_id = $1"),
    ("feature_links", "delete from message_features where workspace_id = $1"),
    ("data_points", "delete from data_points where workspace_id = $1"),
    ("features", "delete from features where workspace_id = $1"),
    ("settings", "delete from workspace_settings where workspace_id = $1"),
    ("provider_hosts", "delete from provider_hosts where workspace_id = $1"),
)
# The Gong host of a workspace with no message of that source left.
_ORPHAN_HOSTS = """
delete from provider_hosts p where p.workspace_id = $1
  and not exists (select 1 from messages m where m.workspace_id = p.workspace_id and m.source = p.source)
"""
# A MessageUpserted (or an earlier tombstone's MessageDeleted) names the call; this job's own
# MessageDeleted events (no external_id) are what subscribers are to be told, and stay.
_OUTBOX = """
delete from outbox o
using normalizer_erasure_items i
where i.erasure_id = $1 and o.subject like 'messages.%'
  and convert_from(o.payload, 'UTF8')::jsonb ->> 'message_id' = i.message_id::text
  and convert_from(o.payload, 'UTF8')::jsonb ->> 'external_id' is not null
"""
_OUTBOX_OF_WORKSPACE = """
delete from outbox o
where o.subject like 'messages.%'
  and convert_from(o.payload, 'UTF8')::jsonb ->> 'workspace_id' = $1
  and convert_from(o.payload, 'UTF8')::jsonb ->> 'external_id' is not null
"""
_ITEMS = "select message_id, source, external_id from normalizer_erasure_items where erasure_id = $1"
_DONE = "update normalizer_erasures set finished_at = coalesce(finished_at, now()) where erasure_id = $1"
_FORGET_ITEMS = "delete from normalizer_erasure_items where erasure_id = $1"

# (stream, subject filter, count name, overwrite): where events name messages, integrations or
# workspaces. ``calls.raw.*``: only the subjects without an integration token (the rest is purged).
#
# Overwrite: nats-server can overwrite a deleted message's bytes in its block file, at about 200
# deletions a second on this machine (it rewrites the block) against 16,000 without (bench/README.md,
# "erase"). Without it a deleted event is unreadable at once,
# like a purged one (a purge does not overwrite either), and its bytes leave the disk when their
# block ages out (every stream has an age limit). Events with transcript text (raw calls, data
# points' evidence quotes, dead letters) are overwritten; those with ids and titles only
# (MESSAGES, FEATURES, SYNC_EVENTS), usually the great majority, are not: 50,000 of them would
# otherwise take four minutes.
SCRUBBED = (
    (CALLS_RAW, "calls.raw.*", "raw_events", True),
    (MESSAGES, "messages.>", "message_events", False),
    (FEATURES, "features.>", "feature_events", False),
    (DATAPOINTS, "datapoints.>", "data_point_events", True),
    (SYNC_EVENTS, "sync.events.>", "sync_events", False),
    (DLQ, "dlq.>", "dead_letters", True),
)


class _Ref(msgspec.Struct):
    message_id: str | None = None
    source: str | None = None
    external_id: str | None = None


class _Named(msgspec.Struct):
    """What an event of any of our kinds names (every other field is skipped unread)."""

    workspace_id: str | None = None
    integration_id: str | None = None
    message_id: str | None = None
    source: str | None = None
    external_id: str | None = None
    message: _Ref | None = None


class _Dead(msgspec.Struct):
    """A dead letter: the subject and bytes of what could not be processed."""

    subject: str = ""
    data: bytes = b""


_NAMED = msgspec.json.Decoder(_Named)
_DEAD = msgspec.json.Decoder(_Dead)


@dataclass(frozen=True, slots=True)
class Erased:
    """What one job erases, as the streams name it."""

    scope: str
    workspace_id: str
    integration_ids: frozenset[str]
    message_ids: frozenset[str]
    calls: frozenset[tuple[str, str]]  # (source, external_id) within the workspace

    def names_subject(self, subject: str) -> bool:
        tokens = subject.split(".")
        return len(tokens) == 4 and tokens[0] == "calls" and tokens[3] in self.integration_ids

    def names(self, subject: str, data: bytes) -> bool:
        if self.names_subject(subject):
            return True
        if subject.startswith("dlq."):
            try:
                dead = _DEAD.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return self._in_bytes(data)
            return self.names_subject(dead.subject) or self.names(dead.subject, dead.data)
        try:
            named = _NAMED.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Not one of our events (or a broken one): the integration's id anywhere in it decides.
            return self._in_bytes(data)
        if subject.startswith("messages.deleted.") and named.external_id is None:
            return False  # an erasure's own announcement: what subscribers are to be told
        return self._names(named)

    def _names(self, n: _Named) -> bool:
        if n.integration_id is not None and n.integration_id in self.integration_ids:
            return True
        if n.integration_id is not None and self.scope == "integration":
            # Another integration's raw call or progress, even of a call both delivered (a Fathom
            # recording shared into two accounts): the other keeps what it received.
            return False
        if n.workspace_id is not None and n.workspace_id != self.workspace_id:
            return False
        if self.scope == "workspace" and n.workspace_id == self.workspace_id:
            return True
        if n.message_id is not None and n.message_id in self.message_ids:
            return True
        if n.source is not None and n.external_id is not None and (n.source, n.external_id) in self.calls:
            return True
        ref = n.message
        if ref is None:
            return False
        if ref.message_id is not None and ref.message_id in self.message_ids:
            return True
        return ref.source is not None and ref.external_id is not None and (ref.source, ref.external_id) in self.calls

    def _in_bytes(self, data: bytes) -> bool:
        keys: Iterable[str] = self.integration_ids
        if self.scope == "workspace":
            keys = [*self.integration_ids, f'"workspace_id":"{self.workspace_id}"']
        return any(key.encode() in data for key in keys)


@dataclass
class ErasureReport:
    erasure_id: str
    counts: dict[str, int]


Heartbeat = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def erase(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    request: ErasureRequested,
    *,
    heartbeat: Heartbeat = _nothing,
    batch_size: int = BATCH,
    pause_ratio: float = 0.0,
) -> ErasureReport:
    """Carry out (or resume) this service's part of ``request``; returns its counts."""
    erasure_id = request.erasure_id
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            _START,
            erasure_id,
            request.scope,
            request.workspace_id,
            sorted(request.integration_ids),
            request.requested_at,
        )
        row = await conn.fetchrow(_COUNTS, erasure_id)
        assert row is not None
        if row["finished_at"] is not None:  # done before: the same counts again
            return ErasureReport(erasure_id, dict(row["counts"]))
        if request.integration_ids:
            await conn.execute(_LOCK_TIMEOUT)
            await conn.execute(_REGISTER_LOCK)
            await conn.execute(_REGISTER, sorted(request.integration_ids), erasure_id)

    await _erase_messages(pool, request, heartbeat, batch_size, pause_ratio)
    async with pool.acquire() as conn, conn.transaction():
        counts = await _counts(conn, erasure_id)
        customers = await conn.execute(_ORPHAN_CUSTOMERS, erasure_id)
        _add(counts, "customers", customers)
        if request.scope == "workspace":
            for kind, statement in _WORKSPACE_REST:
                _add(counts, kind, await conn.execute(statement, request.workspace_id))
        else:
            _add(counts, "provider_hosts", await conn.execute(_ORPHAN_HOSTS, request.workspace_id))
        await conn.execute(_SAVE_COUNTS, erasure_id, counts)
    await heartbeat()
    async with pool.acquire() as conn, conn.transaction():
        # Before the streams: an upsert still unpublished would otherwise be published after them.
        outbox = await conn.execute(_OUTBOX, erasure_id)
        if request.scope == "workspace":
            outbox = _plus(outbox, await conn.execute(_OUTBOX_OF_WORKSPACE, request.workspace_id))
        counts = await _counts(conn, erasure_id)
        _add(counts, "outbox_events", outbox)
        await conn.execute(_SAVE_COUNTS, erasure_id, counts)
    await heartbeat()

    async with pool.acquire() as conn:
        items = await conn.fetch(_ITEMS, erasure_id)
    erased = Erased(
        scope=request.scope,
        workspace_id=request.workspace_id,
        integration_ids=frozenset(request.integration_ids),
        message_ids=frozenset(str(r["message_id"]) for r in items),
        calls=frozenset((r["source"], r["external_id"]) for r in items),
    )
    stream_counts = await _scrub_streams(js, erased, heartbeat)
    async with pool.acquire() as conn, conn.transaction():
        counts = await _counts(conn, erasure_id)
        for kind, n in stream_counts.items():
            counts[kind] = counts.get(kind, 0) + n
        await conn.execute(_SAVE_COUNTS, erasure_id, counts)
        await conn.execute(_DONE, erasure_id)
        await conn.execute(_FORGET_ITEMS, erasure_id)
    log.info("erasure part finished", erasure_id=erasure_id, scope=request.scope, **counts)
    return ErasureReport(erasure_id, counts)


async def _counts(conn: asyncpg.Connection, erasure_id: str) -> dict[str, int]:
    row = await conn.fetchrow(_COUNTS, erasure_id)
    assert row is not None
    counts: dict[str, int] = dict(row["counts"])  # the pool decodes jsonb (runtime.create_pool)
    return counts


def _rows(status: str) -> int:
    """The row count of a command tag (``DELETE 12``)."""
    return int(status.split()[-1])


def _add(counts: dict[str, int], kind: str, status: str | int) -> None:
    counts[kind] = counts.get(kind, 0) + (status if isinstance(status, int) else _rows(status))


def _plus(a: str, b: str) -> int:
    return _rows(a) + _rows(b)


async def _erase_messages(
    pool: asyncpg.Pool, request: ErasureRequested, heartbeat: Heartbeat, batch_size: int, pause_ratio: float
) -> None:
    last = UUID(int=0)
    integrations = sorted(request.integration_ids)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        async with pool.acquire() as conn, conn.transaction():
            if request.scope == "workspace":
                rows = await conn.fetch(_NEXT_OF_WORKSPACE, last, request.workspace_id, batch_size)
            else:
                rows = await conn.fetch(_NEXT_OF_INTEGRATIONS, last, request.workspace_id, integrations, batch_size)
            if not rows:
                return
            await _erase_batch(conn, request.erasure_id, rows)
        last = rows[-1]["id"]
        await heartbeat()
        if pause_ratio:
            # Not as fast as the database allows: measured with bench/erase, 50,000 messages at
            # full speed raised the linker's p99 for other tenants from 5 to 321 ms.
            await asyncio.sleep((loop.time() - started) * pause_ratio)


async def _erase_batch(conn: asyncpg.Connection, erasure_id: str, rows: list[asyncpg.Record]) -> None:
    ids = [row["id"] for row in rows]
    counts = await _counts(conn, erasure_id)
    linked = [r["contact_id"] for r in await conn.fetch(_CONTACTS_OF, ids)]
    await conn.execute(_CONTACT_LINKS, ids)  # links go, counts follow, a contact no call names goes
    gone_contacts = len(linked) - int(await conn.fetchval(_CONTACTS_LEFT, linked)) if linked else 0
    _add(counts, "contacts", gone_contacts)
    _add(counts, "participants", await conn.execute("delete from message_participants where message_id = any($1)", ids))
    _add(counts, "feature_links", await conn.execute("delete from message_features where message_id = any($1)", ids))
    _add(counts, "data_points", await conn.execute("delete from data_points where message_id = any($1)", ids))
    await conn.execute(
        _REMEMBER,
        erasure_id,
        ids,
        [r["source"] for r in rows],
        [r["external_id"] for r in rows],
        [r["customer_id"] for r in rows],
    )
    _add(counts, "messages", await conn.execute("delete from messages where id = any($1)", ids))
    await conn.execute(_ERASED_MESSAGES, ids, erasure_id)
    now = datetime.now(UTC)
    events = [
        MessageDeleted(
            message_id=str(r["id"]),
            workspace_id=r["workspace_id"],
            source=r["source"],
            external_id=None,
            reason="erased",
            deleted_at=now,
            version=r["version"] + 1,
        )
        for r in rows
    ]
    await announce_deleted(conn, events)
    await conn.execute(_SAVE_COUNTS, erasure_id, counts)


async def _scrub_streams(js: JetStreamContext, erased: Erased, heartbeat: Heartbeat) -> dict[str, int]:
    counts: dict[str, int] = {}
    for integration_id in sorted(erased.integration_ids):
        for subject in (f"calls.raw.*.{integration_id}", f"calls.listed.*.{integration_id}"):
            counts["raw_events"] = counts.get("raw_events", 0) + await _purge(js, CALLS_RAW, subject)
            await heartbeat()
    for stream, subjects, kind, overwrite in SCRUBBED:
        counts[kind] = counts.get(kind, 0) + await _scrub(js, stream, subjects, erased, heartbeat, overwrite)
    return counts


async def _purge(js: JetStreamContext, stream: str, subject: str) -> int:
    """Purge by subject; the count nats-server reports (nats-py's ``purge_stream`` drops it)."""
    reply = await js._nc.request(f"$JS.API.STREAM.PURGE.{stream}", json.dumps({"filter": subject}).encode(), timeout=30)
    answer = json.loads(reply.data)
    if "error" in answer:
        APIError.from_error(answer["error"])  # raises the error's class
    return int(answer.get("purged", 0))


async def _scrub(
    js: JetStreamContext, stream: str, subjects: str, erased: Erased, heartbeat: Heartbeat, overwrite: bool
) -> int:
    """Delete every event of ``stream`` (under ``subjects``) that names what is erased; returns how
    many this call deleted. Read with an ordered consumer (create-only permission, nothing to
    settle); a read that stalls fails the step (retried with the job), it never ends it early."""
    try:
        info = await js.stream_info(stream, subjects_filter=subjects)
    except NotFoundError:
        return 0
    if not info.state.subjects:  # nothing under the filter
        return 0
    last_seq = info.state.last_seq
    sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    doomed: list[int] = []
    stalls = read = 0
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=SCAN_WAIT_SECONDS)
            except (nats.errors.TimeoutError, TimeoutError):
                stalls += 1
                if stalls >= SCAN_STALLS:
                    raise TimeoutError(f"reading {stream} stalled: the erasure's scan is tried again") from None
                await heartbeat()
                continue
            stalls = 0
            meta = msg.metadata
            if erased.names(msg.subject, msg.data):
                doomed.append(meta.sequence.stream)
            read += 1
            if read % 256 == 0:
                await heartbeat()
            if meta.sequence.stream >= last_seq or meta.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):  # an ordered consumer goes by itself when its reader does
            await sub.unsubscribe()
    deleted = 0
    for start in range(0, len(doomed), 64):
        found = await asyncio.gather(
            *(delete_event(js, stream, seq, overwrite=overwrite) for seq in doomed[start : start + 64])
        )
        deleted += sum(found)
        await heartbeat()
    return deleted


async def delete_event(js: JetStreamContext, stream: str, seq: int, *, overwrite: bool) -> bool:
    """Delete one event (nats-py's ``delete_msg`` cannot say ``no_erase``); False when it was gone
    already (a resumed job, or its age limit), so a step run twice counts each event once."""
    request = {"seq": seq} if overwrite else {"seq": seq, "no_erase": True}
    reply = await js._nc.request(f"$JS.API.STREAM.MSG.DELETE.{stream}", json.dumps(request).encode(), timeout=30)
    answer = json.loads(reply.data)
    error = answer.get("error")
    if error is None:
        return True
    if error.get("err_code") == 10057:  # "no message found"
        return False
    APIError.from_error(error)  # raises the error's class
    return False


async def _handle(runtime: ServiceRuntime, settings: Settings, msg: Msg) -> None:
    try:
        request = _DECODER.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"unusable erasure request: {exc}") from exc
    beat = _Heartbeat(msg)
    try:
        report = await erase(
            runtime.db, runtime.broker.js, request, heartbeat=beat, pause_ratio=settings.erasure_pause_ratio
        )
    except Exception as exc:
        if is_poison(exc):
            raise Unprocessable(f"rejected by the database: {type(exc).__name__}") from exc
        raise
    finished = ErasureFinished(
        erasure_id=request.erasure_id, service="normalizer", counts=report.counts, finished_at=datetime.now(UTC)
    )
    await runtime.broker.js.publish(
        erasures_finished_subject("normalizer"),
        _EVENT.encode(finished),
        headers={"Nats-Msg-Id": f"{request.erasure_id}:normalizer"},
    )


class _Heartbeat:
    """In-progress acks at most every ``HEARTBEAT_SECONDS``: a job of 50,000 messages keeps its lease."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self._last = asyncio.get_running_loop().time()

    async def __call__(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last >= HEARTBEAT_SECONDS:
            self._last = now
            await self._msg.in_progress()


async def run_erasure_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker (under the runtime's supervisor): one erasure at a time, in the order asked."""
    await runtime.broker.wait_connected()
    await consume(
        runtime.broker.js,
        NORMALIZER_ERASURES_CONSUMER,
        lambda msg: _handle(runtime, settings, msg),
        runtime.stopping,
        batch=1,
        fetch_timeout=settings.fetch_timeout_seconds,
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(runtime.db, runtime.stopping),
    )
