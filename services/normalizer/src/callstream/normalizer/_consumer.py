"""The durable pull consumer on ``CALLS_RAW``: fetch a batch, map it, store it in one transaction,
commit, then ack.

- a payload that can never be mapped, or whose values the database rejects, goes to the DLQ and is
  terminated; the rest of its batch proceeds;
- a transient failure (database or broker away, serialization conflict) naks the batch with a
  growing delay, and the worker waits for the database before fetching more; on its last allowed
  delivery (``max_deliver``) a message goes to the DLQ instead;
- a process killed after the commit but before the ack gets the batch redelivered, and the store
  finds it unchanged: nothing written, nothing emitted.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from callstream.contracts import (
    CALLS_RAW,
    NORMALIZER_CONSUMER,
    MessageUpserted,
    Source,
    SyncStored,
    sync_stored_subject,
)
from callstream.runtime import (
    ServiceRuntime,
    SpanKind,
    backoff_delay,
    bind,
    get_logger,
    give_up,
    nak,
    tracing,
    wait_for_postgres,
)
from callstream.runtime._tracing import mark_error

from ._erasure import delete_event
from ._errors import is_poison, is_transient
from ._mapped import MappedMessage, UnmappableError
from ._mapping import map_raw_call
from ._metrics import BATCH_MESSAGES, BATCH_STORE_SECONDS, RAW_CALLS
from ._pull import BytePull, Pulled
from ._settings import Settings
from ._store import store_batch

log = get_logger(__name__)
_REPORT = msgspec.json.Encoder()
REPORT_TIMEOUT_SECONDS = 2.0

# Traced: the span of each message of the batch this task stores, by message key.
_MESSAGE_SPANS: ContextVar[dict[tuple[str, str, str], Any] | None] = ContextVar("message_spans", default=None)


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    retried: int = 0

    @property
    def transient_failure(self) -> bool:
        return self.retried > 0


@dataclass(frozen=True, slots=True)
class Prepared:
    mappable: list[tuple[Msg, MappedMessage]]
    dead_lettered: int = 0


class RawCallProcessor:
    """Handles fetched batches. Holds no connection of its own (pool and JetStream are passed in)."""

    def __init__(
        self, pool: asyncpg.Pool, js: JetStreamContext, settings: Settings, *, max_deliver: int | None = None
    ) -> None:
        self._pool = pool
        self._js = js
        self._settings = settings
        self._links = settings.link_allow_list  # MessageUpserted links pass the linker's rule
        self._max_deliver = max_deliver or NORMALIZER_CONSUMER.max_deliver

    async def process(self, msgs: Sequence[Msg]) -> BatchResult:
        return await self.store(await self.prepare(msgs))

    async def prepare(self, msgs: Sequence[Msg]) -> Prepared:
        """Map a batch; what can never be mapped goes to the DLQ at once.

        Mapping is pure (no I/O), so any exception it raises for one message (not only
        ``UnmappableError``: a ``RecursionError``, a bug meeting an odd payload) comes back on every
        delivery: that message goes to the DLQ with the error, and the rest of the batch goes on."""
        mappable: list[tuple[Msg, MappedMessage]] = []
        dead = 0
        msgs = await self._without_erased(msgs)
        for msg in msgs:
            delivered = msg.metadata.num_delivered
            if delivered >= self._max_deliver:  # JetStream's last: it would drop the next silently
                reason = f"gave up after {delivered} deliveries (its store kept failing, or the process died on it)"
                dead += await self._give_up(msg, reason)
                continue
            try:
                mappable.append((msg, map_raw_call(msg.data, self._links)))
            except UnmappableError as exc:
                dead += await self._give_up(msg, f"unmappable: {exc}")
            except MemoryError:  # the process's memory, not the message: another try may fit
                log.error("mapping ran out of memory, retrying later", subject=msg.subject, bytes=len(msg.data))
                await nak(msg, self._settings.retry_max_seconds)
            except Exception as exc:
                log.error("mapping failed", subject=msg.subject, error=type(exc).__name__, exc_info=exc)
                dead += await self._give_up(msg, f"unmappable: {type(exc).__name__}: {str(exc)[:300]}")
        return Prepared(mappable, dead)

    async def _without_erased(self, msgs: Sequence[Msg]) -> Sequence[Msg]:
        """Raw calls of an erased integration that arrive after its erasure (a pull page or a
        webhook in flight) are deleted from the stream (their bytes overwritten) and acknowledged,
        never mapped: the messages table's trigger would skip their rows, but not their customer,
        their provider host, or their transcript left in CALLS_RAW. Found by the subject's
        integration token: one look-up per batch."""
        named = {token for msg in msgs if (token := _integration_of(msg.subject)) is not None}
        if not named:
            return msgs
        try:
            erased = set(await self._pool.fetchval(_ERASED, list(named)) or ())
        except Exception:  # the database away: the store fails next and naks the batch, as before
            return msgs
        if not erased:
            return msgs
        kept = []
        for msg in msgs:
            if _integration_of(msg.subject) in erased:
                await delete_event(self._js, CALLS_RAW, msg.metadata.sequence.stream, overwrite=True)
                await msg.ack()
                RAW_CALLS.labels("erased").inc()
            else:
                kept.append(msg)
        return kept

    async def store(self, prepared: Prepared) -> BatchResult:
        if tracing.on and prepared.mappable:
            return await self._store_traced(prepared)
        return await self._store_prepared(prepared)

    async def _store_traced(self, prepared: Prepared) -> BatchResult:
        """The batch's span links to the trace of each message (a batch serves many); each message
        gets a span in its own trace, whose context its outbox row keeps, so its MessageUpserted
        continues that trace."""
        parents = [tracing.extract(msg.headers, mapped.traceparent) for msg, mapped in prepared.mappable]
        links = [link for link in (tracing.link_from(p) for p in parents) if link is not None]
        with tracing.span(
            "normalizer store batch",
            links=links,
            attributes={"messaging.batch.message_count": len(prepared.mappable)},
        ) as batch_span:
            to_batch = [tracing.link_to(batch_span)]
            spans: dict[tuple[str, str, str], Any] = {}
            mappable: list[tuple[Msg, MappedMessage]] = []
            for (msg, mapped), parent in zip(prepared.mappable, parents, strict=True):
                span = tracing.tracer.start_span(
                    "normalizer store",
                    context=parent,
                    kind=SpanKind.CONSUMER,
                    links=to_batch,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.destination.name": msg.subject,
                        "callstream.workspace_id": mapped.workspace_id,
                        "callstream.integration_id": mapped.integration_id,
                        "callstream.message.source": mapped.source,
                        "callstream.message.external_id": mapped.external_id,
                    },
                )
                spans[mapped.key] = span
                context = tracing.context_of(span)
                traced = replace(mapped, traceparent=context.get("traceparent"), tracestate=context.get("tracestate"))
                mappable.append((msg, traced))
            token = _MESSAGE_SPANS.set(spans)
            try:
                result = await self._store_prepared(Prepared(mappable, prepared.dead_lettered))
            finally:
                _MESSAGE_SPANS.reset(token)
                for span in spans.values():
                    span.end()
            batch_span.set_attributes({"callstream.stored": result.stored, "callstream.unchanged": result.unchanged})
            if result.retried:
                mark_error(batch_span, f"{result.retried} messages to retry")
            return result

    async def _store_prepared(self, prepared: Prepared) -> BatchResult:
        mappable, dead = prepared.mappable, prepared.dead_lettered
        if not mappable:
            return BatchResult(dead_lettered=dead)
        try:
            events = await self._store([m for _, m in mappable])
        except Exception as exc:
            # Not an outage: one message's value, or a rule (a constraint, a trigger, a bug) one of
            # them breaks. Storing each alone keeps the rest from sharing its retries and its DLQ.
            if is_poison(exc) or (not is_transient(exc) and len(mappable) > 1):
                result = await self._one_by_one(mappable)
                return BatchResult(result.stored, result.unchanged, result.dead_lettered + dead, result.retried)
            retried, dead_now = await self._retry_later([msg for msg, _ in mappable], exc)
            return BatchResult(dead_lettered=dead + dead_now, retried=retried)
        stored = len(events)
        await self._report_runs(mappable, events)
        await self._ack([msg for msg, _ in mappable])
        RAW_CALLS.labels("stored").inc(stored)
        RAW_CALLS.labels("unchanged").inc(len(mappable) - stored)
        return BatchResult(stored=stored, unchanged=len(mappable) - stored, dead_lettered=dead)

    async def _store(self, mapped: list[MappedMessage]) -> list[MessageUpserted]:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            events = await store_batch(conn, mapped)
        BATCH_STORE_SECONDS.observe(time.perf_counter() - started)
        BATCH_MESSAGES.observe(len(mapped))
        if tracing.on:
            _annotate(events)
        return events

    async def _report_runs(self, stored: list[tuple[Msg, MappedMessage]], events: list[MessageUpserted]) -> None:
        """``SyncStored`` for each pull run with calls in this committed batch (webhook calls have
        none). Best effort: the messages are stored whatever happens here, and a report lost
        leaves the run's stored counts short, never wrong (the scheduler adds a batch once)."""
        runs = run_reports(stored, events)
        for report in runs:
            try:
                await self._js.publish(
                    sync_stored_subject(report.source),
                    _REPORT.encode(report.event),
                    headers={"Nats-Msg-Id": f"stored-{report.event.run_id}-{report.event.batch}"},
                    timeout=REPORT_TIMEOUT_SECONDS,
                )
            except Exception as exc:
                log.warning("stored counts of a run not reported", run_id=report.event.run_id, error=type(exc).__name__)

    async def _one_by_one(self, mappable: list[tuple[Msg, MappedMessage]]) -> BatchResult:
        """A value in the batch was rejected: find which by storing each alone."""
        stored = unchanged = dead = retried = 0
        for msg, mapped in mappable:
            try:
                written = await self._store([mapped])
            except Exception as exc:
                if is_poison(exc):
                    dead += await self._give_up(msg, f"rejected by the database: {type(exc).__name__}: {exc}")
                else:
                    r, d = await self._retry_later([msg], exc)
                    retried, dead = retried + r, dead + d
                continue
            await self._report_runs([(msg, mapped)], written)
            await self._ack([msg])
            stored, unchanged = stored + len(written), unchanged + (1 - len(written))
        return BatchResult(stored, unchanged, dead, retried)

    async def _retry_later(self, msgs: list[Msg], exc: Exception) -> tuple[int, int]:
        level = "warning" if is_transient(exc) else "error"
        # The error's type and SQLSTATE only: PostgreSQL's text may quote a value (a transcript).
        getattr(log, level)(
            "batch not stored, retrying later", error=type(exc).__name__, sqlstate=getattr(exc, "sqlstate", None)
        )
        retried = dead = 0
        for msg in msgs:
            delivered = msg.metadata.num_delivered
            if delivered >= self._max_deliver:
                dead += await self._give_up(msg, f"gave up after {delivered} deliveries: {type(exc).__name__}: {exc}")
                continue
            await nak(
                msg, backoff_delay(delivered, self._settings.retry_base_seconds, self._settings.retry_max_seconds)
            )
            retried += 1
        RAW_CALLS.labels("retried").inc(retried)
        return retried, dead

    async def _give_up(self, msg: Msg, error: str) -> int:
        consumer = NORMALIZER_CONSUMER.durable
        if not await give_up(self._js, msg, error, consumer=consumer, retry_delay=self._settings.retry_base_seconds):
            return 0
        RAW_CALLS.labels("dead_lettered").inc()
        return 1

    async def _ack(self, msgs: list[Msg]) -> None:
        # Fire-and-forget acks: committed already, so a lost ack only brings a redelivery that finds
        # the rows unchanged and emits nothing. Waiting for JetStream's confirmation of each would
        # hold the batch's store slot for another round trip per message.
        failed = 0
        for msg in msgs:
            try:
                await msg.ack()
            except Exception:
                failed += 1
        if failed:
            log.warning("ack failed", count=failed)


_ERASED = "select array_agg(integration_id) from normalizer_erased_integrations where integration_id = any($1::text[])"


def _integration_of(subject: str) -> str | None:
    """``calls.raw.<source>.<integration_id>``'s integration (None on the older three-token subject)."""
    tokens = subject.split(".")
    return tokens[3] if len(tokens) == 4 else None


@dataclass(frozen=True, slots=True)
class RunReport:
    source: Source
    event: SyncStored


def run_reports(stored: Sequence[tuple[Msg, MappedMessage]], events: Sequence[MessageUpserted]) -> list[RunReport]:
    """What a committed batch made of each pull run's calls. A call written is ``created`` or
    ``updated`` as its event says; one the store left as it was, ``unchanged``. The batch is named
    by its raw events' stream sequences, the same on every delivery of the same batch."""
    changes: dict[tuple[str, str, str], str] = {(e.workspace_id, e.source, e.external_id): e.change for e in events}
    counts: dict[str, list[int]] = {}
    seqs: dict[str, list[int]] = {}
    first: dict[str, MappedMessage] = {}
    for msg, mapped in stored:
        if mapped.run_id is None:
            continue
        tally = counts.setdefault(mapped.run_id, [0, 0, 0])
        first.setdefault(mapped.run_id, mapped)
        seqs.setdefault(mapped.run_id, []).append(msg.metadata.sequence.stream)
        change = changes.pop(mapped.key, None)  # a key twice in one batch was written once
        tally[0 if change == "created" else 1 if change == "updated" else 2] += 1
    now = datetime.now(UTC)
    reports = []
    for run_id, (created, updated, unchanged) in counts.items():
        batch = hashlib.blake2b(",".join(map(str, sorted(seqs[run_id]))).encode(), digest_size=8).hexdigest()
        mapped = first[run_id]
        event = SyncStored(
            run_id=run_id,
            integration_id=mapped.integration_id,
            batch=batch,
            created=created,
            updated=updated,
            unchanged=unchanged,
            at=now,
        )
        reports.append(RunReport(mapped.source, event))
    return reports


def _annotate(events: list[MessageUpserted]) -> None:
    """Traced: what was stored, on the span of each message that was written."""
    spans = _MESSAGE_SPANS.get()
    if not spans:
        return
    for event in events:
        span = spans.get((event.workspace_id, event.source, event.external_id))
        if span is not None:
            span.set_attributes(
                {
                    "callstream.message.stored": True,
                    "callstream.message_id": event.message_id,
                    "callstream.message.change": event.change,
                    "callstream.message.version": event.version,
                }
            )


def _pull(puller: BytePull, settings: Settings) -> Callable[[int], Awaitable[Pulled]]:
    """Fetch for ``write_batches``: up to ``batch_size`` raw calls within ``max_bytes`` (0: one raw
    call, whatever its size). A failed request (the consumer deleted) escapes: the supervisor
    rebuilds the subscription with backoff; a broker away answers nothing in time: an empty batch."""

    async def fetch(max_bytes: int) -> Pulled:
        batch = settings.batch_size if max_bytes else 1
        return await puller.pull(batch, max_bytes, settings.fetch_timeout_seconds)

    return fetch


def concurrent_stores(fetched: int, settings: Settings, *, full: bool = False) -> int:
    """How many batches may be written at once after a fetch of ``fetched`` raw calls.

    A full batch (by count, or ``full``: cut short by the byte budget) means the consumer is behind: several transactions at once use both cores. A
    partial one means it has caught up, and then concurrent small transactions only queue on the
    outbox lock and the CPUs: at a steady 500 webhooks/s, one at a time gave p50 24-27 ms from the
    gateway's 202 to the served link, three at once 32-37 ms (``bench/e2e_latency``)."""
    return settings.store_concurrency if full or fetched >= settings.batch_size else 1


async def run_raw_call_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker: fetch, map, store, ack until the service stops.

    While behind, up to ``store_concurrency`` batches are written at once, each in its own
    transaction on its own connection: a PostgreSQL backend works on one core, so one transaction
    at a time leaves the database's side of the work on one core while this process maps the next
    batch. Caught up, one at a time (``concurrent_stores``). Each
    batch is still acknowledged only after its own commit; the store's rules (in SQL, row locks
    taken in key order) are the ones that already hold between replicas.

    Batches are pulled with a byte budget (``fetch_max_bytes``, see ``write_batches``), by
    :class:`BytePull`: nats-py's ``fetch`` cannot ask JetStream for ``max_bytes``."""
    await runtime.broker.wait_connected()
    js = runtime.broker.js
    # bind() declares the consumer when it is missing (the rule every consumer follows); its
    # nats-py subscription is not used for fetching, only the consumer it guarantees.
    await _unsubscribe(await bind(js, NORMALIZER_CONSUMER))
    puller = await BytePull(runtime.broker.nc, NORMALIZER_CONSUMER).open()
    log.info(
        "consuming raw calls",
        batch_size=settings.batch_size,
        store_concurrency=settings.store_concurrency,
        fetch_max_bytes=settings.fetch_max_bytes,
    )
    try:
        await write_batches(
            _pull(puller, settings),
            RawCallProcessor(runtime.db, js, settings),
            settings,
            runtime.stopping,
            lambda: wait_for_postgres(runtime.db, runtime.stopping),
        )
    finally:
        await _unsubscribe(puller)


async def _unsubscribe(sub: Any) -> None:
    try:
        await (sub.close() if isinstance(sub, BytePull) else sub.unsubscribe())
    except Exception as exc:  # the connection is gone already
        log.debug("unsubscribe failed", error=type(exc).__name__)


class BatchWriter(Protocol):
    async def prepare(self, msgs: Sequence[Msg]) -> Prepared: ...
    async def store(self, prepared: Prepared) -> BatchResult: ...


async def write_batches(
    fetch: Callable[[int], Awaitable[Pulled]],
    processor: BatchWriter,
    settings: Settings,
    stopping: asyncio.Event,
    database_back: Callable[[], Awaitable[None]],
) -> None:
    """Fetch, map and start writing batches until ``stopping``; then let the ones being written
    finish (commit, then ack) within the shutdown grace period.

    While behind, a batch is fetched only for a free slot: one mapped ahead of its slot would be
    one more batch of transcripts in memory (peak RSS, ``bench/normalizer``). Caught up, the next
    batch is still fetched and mapped while the one before it is written.

    Memory is bounded by bytes, not only by batches: ``fetch(max_bytes)`` asks JetStream for at
    most what ``fetch_max_bytes`` leaves free after the batches still being written (the server
    stops before a message that would not fit). Meetings reach 16 MiB, and handling one costs
    several times its size, so 100 of them per batch and three batches in flight could take a
    process to gigabytes: OOM-killed in its container, redelivered, killed again. Chosen over
    batch sizes adapted to the sizes just seen because the server enforces it before the bytes are
    sent (a first fetch after a start knows no sizes), and it costs 20 KB calls nothing: 100 of
    them are 2 MB, far below the budget. A raw call that does not fit in what is free waits until
    every batch being written is done; one larger than the whole budget is then fetched alone."""
    storing: dict[asyncio.Task[BatchResult], int] = {}  # each batch being written: its raw bytes
    budget = settings.fetch_max_bytes

    async def settle(limit: int) -> None:
        """Wait until fewer than ``limit`` batches are being written; after a transient failure,
        wait for the database before fetching more."""
        while len(storing) >= max(limit, 1):
            done, _ = await asyncio.wait(storing, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del storing[task]
            if any(task.result().transient_failure for task in done):
                await database_back()

    async def pull() -> Pulled:
        while storing and sum(storing.values()) >= budget:  # nothing free: wait for a commit
            await settle(len(storing))
        pulled = await fetch(budget - sum(storing.values()))
        if not pulled.oversized:
            return pulled
        await settle(1)  # the next raw call needs more than is free: let every batch finish first
        if stopping.is_set():
            return Pulled()
        pulled = await fetch(budget)
        return await fetch(0) if pulled.oversized else pulled  # larger than the budget: alone

    try:
        limit = 1
        while not stopping.is_set():
            await settle(max(limit, 2))
            if stopping.is_set():
                break
            pulled = await pull()
            limit = concurrent_stores(len(pulled.msgs), settings, full=pulled.full)
            prepared = await processor.prepare(pulled.msgs)
            if not prepared.mappable:
                continue
            await settle(limit)
            storing[asyncio.create_task(processor.store(prepared))] = pulled.nbytes
    finally:
        if storing:
            await asyncio.gather(*storing, return_exceptions=True)
