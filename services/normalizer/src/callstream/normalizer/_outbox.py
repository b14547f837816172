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
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from prometheus_client import Counter

from callstream.contracts import DeadLetter, dead_letter_size, dlq_subject
from callstream.runtime import ServiceRuntime, SpanKind, get_logger, tracing
from callstream.runtime._tracing import mark_error

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
# Rows taken (and marked) by this cycle that were not published: back to the next one.
_UNMARK = "update outbox set published_at = null where id = any($1::bigint[])"

# Rows that can never be published go to the DLQ under this name (not a JetStream consumer).
OUTBOX_DEAD_LETTERS = "normalizer-outbox"
OUTBOX_DLQ_SUBJECT = dlq_subject(OUTBOX_DEAD_LETTERS)
EVENTS_DEAD_LETTERED = Counter(
    "callstream_normalizer_events_dead_lettered_total", "outbox rows that could never be published, dead-lettered"
)


def msg_id(outbox_id: int) -> str:
    return f"outbox-{outbox_id}"


_EXPECTED_LAST = "Nats-Expected-Last-Msg-Id"


def _headers(row: asyncpg.Record) -> dict[str, str]:
    """The row's headers: its ``Nats-Msg-Id`` and the trace context stored with it."""
    headers = {"Nats-Msg-Id": msg_id(row["id"])}
    if row["traceparent"]:
        headers["traceparent"] = row["traceparent"]
        if row["tracestate"]:
            headers["tracestate"] = row["tracestate"]
    return headers


_MESSAGE_ID = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _publish_span(row: asyncpg.Record, headers: dict[str, str]) -> Any:
    """Traced: the publish span of one row, a child of the span that stored its message; its
    context replaces the stored one in ``headers``."""
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.destination.name": row["subject"],
        "messaging.message.id": headers["Nats-Msg-Id"],
        "callstream.outbox_id": row["id"],
    }
    try:  # the event's ids (no text of the message is ever an attribute)
        fields = _MESSAGE_ID.decode(row["payload"])
        for name in ("message_id", "workspace_id", "external_id"):
            if name in fields:
                key = f"callstream.message.{name}" if name != "workspace_id" else "callstream.workspace_id"
                attributes[key] = msgspec.json.decode(fields[name])
    except (msgspec.DecodeError, RecursionError):
        pass
    span = tracing.tracer.start_span(
        f"{row['subject']} publish", context=tracing.extract(headers), kind=SpanKind.PRODUCER, attributes=attributes
    )
    headers.pop("traceparent", None)
    headers.pop("tracestate", None)
    headers.update(tracing.context_of(span))
    return span


async def publish_pending(conn: asyncpg.Connection, js: JetStreamContext, limit: int) -> int:
    """Publish up to ``limit`` unpublished rows in id order; return how many were settled
    (published or dead-lettered; 0 when another replica relays).

    The rows are sent pipelined (``publish_async``, one connection, so the stream stores them in
    the order sent) and their acks are then read **in order**:

    - acked: published;
    - refused for good (:func:`_refused_for_good`: larger than the server's ``max_payload``, which
      is checked before sending, or rejected by the stream for its size): dead-lettered to
      ``dlq.normalizer-outbox`` with the reason, and the relay goes on. The row is not in the
      stream, so the rows after it keep their order;
    - anything else (no answer, the broker away): the row is sent once more alone; failing again,
      the cycle stops there. Only the rows before it
      (and dead-lettered ones) stay marked; it and every row after it are unmarked in the same
      transaction and go out again next cycle, first the failed one, so a row never lands after a
      successor that was *marked*. The failure is then raised (the worker backs off visibly).

    Each row but the first carries ``Nats-Expected-Last-Msg-Id`` = its predecessor's id (the relay
    is the one publisher to MESSAGES, one at a time), so the stream stores a row only right after
    the one before it: a row lost in the pipeline cannot be overtaken by its successors. Sent again
    alone, a row goes without it: alone, it follows the rows confirmed before it anyway.
    """
    failure: BaseException | None = None
    spans: list[Any] = []  # traced: each row's publish span
    async with conn.transaction():
        rows = sorted(await conn.fetch(_TAKE_AND_MARK, limit, RELAY_LOCK), key=lambda row: row["id"])
        if not rows:
            return 0
        headers = [_headers(row) for row in rows]
        # Each row after the first is stored only right after its predecessor: a row lost in the
        # pipeline (no ack, a stream leader change) makes the stream refuse every row after it,
        # which then go out one by one once it is in, so none lands before an earlier one.
        for previous, row_headers in zip(rows, headers[1:], strict=False):
            row_headers[_EXPECTED_LAST] = msg_id(previous["id"])
        if tracing.on:
            spans = [_publish_span(row, h) for row, h in zip(rows, headers, strict=True)]
        outcomes = await _send_in_order(js, rows, headers)
        settled = published = 0
        for i, (row, sent) in enumerate(zip(rows, outcomes, strict=True)):
            outcome = sent
            if outcome is not None and _refused_for_good(outcome) is None:
                # Unanswered or failed in the pipeline: ask again for this row alone, which also
                # gets the stream's verdict that nats-py's publish_async loses (it raises inside
                # its reply handler instead of failing the future, so a refusal looks like silence).
                outcome = await _publish_alone(js, row, headers[i], outcome)
            if outcome is None:
                published += 1
                settled += 1
                continue
            reason = _refused_for_good(outcome)
            if reason is None:
                failure = outcome
                break
            try:
                await _dead_letter(js, row, reason, headers[i])
                if spans:
                    mark_error(spans[i], f"dead-lettered: {reason}"[:200])
            except Exception as exc:  # the DLQ is not reachable either: the row waits for the next cycle
                failure = exc
                break
            settled += 1
        if settled < len(rows):
            await conn.execute(_UNMARK, [row["id"] for row in rows[settled:]])
    for i, span in enumerate(spans):
        if i >= settled:
            mark_error(span, "not published; sent again next cycle")
        span.end()
    EVENTS_PUBLISHED.inc(published)
    if failure is not None:
        log.warning(
            "outbox publish failed, the rest of the batch goes out next cycle",
            outbox_id=rows[settled]["id"],
            published=published,
            error=type(failure).__name__,
        )
        raise failure
    return settled


class _TooLarge(Exception):
    """A row larger than the server's ``max_payload``: refused before it is sent."""


# The stream refused this one message for what it is (JetStream error codes): its size, its header.
_REFUSED_FOR_GOOD = {10054: "larger than the stream accepts", 10055: "header larger than the stream accepts"}


def _refused_for_good(outcome: BaseException) -> str | None:
    """Why a row can never be published, or ``None`` when trying again later may work."""
    if isinstance(outcome, _TooLarge):
        return str(outcome)
    if isinstance(outcome, nats.js.errors.APIError) and outcome.err_code in _REFUSED_FOR_GOOD:
        return f"{_REFUSED_FOR_GOOD[outcome.err_code]}: {outcome.description}"
    return None


def _max_payload(js: JetStreamContext) -> int | None:
    """The connected server's ``max_payload`` (nats-py gives the context no public accessor)."""
    nc = getattr(js, "_nc", None)
    return nc.max_payload if nc is not None and nc.is_connected else None


async def _send_in_order(
    js: JetStreamContext, rows: list[asyncpg.Record], headers: list[dict[str, str]]
) -> list[BaseException | None]:
    """Send the rows in order and wait for their acks: per row ``None`` (stored or a duplicate)
    or what went wrong. After a send fails, nothing more is sent."""
    max_payload = _max_payload(js)
    futures: list[asyncio.Future[Any] | BaseException] = []
    try:
        for row, row_headers in zip(rows, headers, strict=True):
            payload = row["payload"]
            if max_payload is not None and len(payload) > max_payload:
                # nats-py would raise too, but only after registering the ack it waits for.
                futures.append(_TooLarge(f"{len(payload)} bytes, over the server's max_payload of {max_payload}"))
                continue
            try:
                futures.append(await js.publish_async(row["subject"], payload, headers=row_headers))
            except Exception as exc:
                futures.append(exc)
                break
        pending = [f for f in futures if isinstance(f, asyncio.Future)]
        if pending:
            # The stream answers in the order sent: once the last ack is in, an earlier one that is
            # not has been lost and is not waited for.
            await asyncio.wait(pending[-1:], timeout=PUBLISH_ACK_TIMEOUT_SECONDS)
    finally:
        for future in futures:
            if isinstance(future, asyncio.Future) and not future.done():
                future.cancel()
    outcomes: list[BaseException | None] = []
    for future in futures:
        if not isinstance(future, asyncio.Future):
            outcomes.append(future)
        elif future.cancelled():
            outcomes.append(TimeoutError("no publish ack"))
        else:
            outcomes.append(future.exception())
    outcomes += [TimeoutError("not sent")] * (len(rows) - len(outcomes))
    return outcomes


async def _publish_alone(
    js: JetStreamContext, row: asyncpg.Record, headers: dict[str, str], failed: BaseException
) -> BaseException | None:
    """One row, waiting for its own answer: ``None`` when stored (or a duplicate), else the error
    (``failed``, how it failed in the pipeline, while the broker is away)."""
    nc = getattr(js, "_nc", None)
    if nc is not None and not nc.is_connected:
        return failed
    try:
        await js.publish(
            row["subject"],
            row["payload"],
            timeout=PUBLISH_ACK_TIMEOUT_SECONDS,
            headers={k: v for k, v in headers.items() if k != _EXPECTED_LAST},
        )
    except Exception as exc:
        return exc
    return None


async def _dead_letter(js: JetStreamContext, row: asyncpg.Record, reason: str, headers: dict[str, str]) -> None:
    """The row, with why, on ``dlq.normalizer-outbox``; without its bytes when even its dead
    letter could not be carried (the row stays in the outbox table until it is purged)."""
    payload: bytes = row["payload"]
    max_payload = _max_payload(js)
    carried = max_payload is None or dead_letter_size(len(payload)) <= max_payload
    error = f"outbox row {row['id']} ({len(payload)} bytes) cannot be published: {reason}"
    if not carried:
        error += "; the payload is not carried here either (see the outbox table)"
    letter = DeadLetter(
        consumer=OUTBOX_DEAD_LETTERS,
        subject=row["subject"],
        stream_sequence=0,  # never in a stream
        headers={"Nats-Msg-Id": msg_id(row["id"])},
        data=payload if carried else b"",
        error=error[:2000],
        delivery_count=1,
        failed_at=datetime.now(UTC),
    )
    await js.publish(
        OUTBOX_DLQ_SUBJECT,
        msgspec.json.encode(letter),
        timeout=PUBLISH_ACK_TIMEOUT_SECONDS,
        headers={
            **{k: v for k, v in headers.items() if k != _EXPECTED_LAST},
            "Nats-Msg-Id": f"dlq-{OUTBOX_DEAD_LETTERS}-{row['id']}",
        },
    )
    EVENTS_DEAD_LETTERED.inc()
    log.error("outbox row dead-lettered", outbox_id=row["id"], subject=row["subject"], reason=reason[:200])


async def run_outbox_relay(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker: relay until the service stops. A failure (the database or the broker away, the
    listening connection lost) escapes to the supervisor, which starts it again with backoff on a
    fresh connection; the sweep then publishes whatever was committed meanwhile."""
    await runtime.broker.wait_connected()
    js = runtime.broker.nc.jetstream()
    wake = asyncio.Event()

    def on_notify(*_: Any) -> None:
        wake.set()

    last_purge = 0.0
    async with runtime.db.acquire() as conn:
        await conn.add_listener(OUTBOX_CHANNEL, on_notify)
        conn.add_termination_listener(on_notify)  # a lost connection wakes the loop to reconnect
        try:
            while not runtime.stopping.is_set():
                wake.clear()
                published = await publish_pending(conn, js, settings.outbox_batch_size)
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
                    raise ConnectionError("the relay's database connection was lost")
        finally:
            if not conn.is_closed():
                await conn.remove_listener(OUTBOX_CHANNEL, on_notify)
            conn.remove_termination_listener(on_notify)
