"""The scheduler's part of an erasure (issue #19): forget the sync state and run history of the
erased integrations, then report how many rows went (``ErasureFinished`` on
``erasures.finished.scheduler``).

What the scheduler keeps of an integration is its ``sync_state`` row and its ``sync_runs`` (whose
windows, checkpoints and errors describe the account); ``scheduler_jobs`` names no integration.
The rows go and the counts row is written in ONE transaction, so a crash leaves either nothing
done or the counts on record; a redelivered request then finds them and reports the same counts
again (and deletes anything that appeared since, which the first report did not count). The
report carries ``Nats-Msg-Id`` ``<erasure_id>:scheduler``, so a repeat within the duplicate window
is stored once.

Before the rows go, the requests of the integrations' queued or running runs are taken out of the
SYNC work queue, so no pull worker starts one later; a worker holding one stops at its next page
(the run is gone, as for a cancelled one). An erased integration is never scheduled again: the
due loop and the API take only ``active`` integrations, and sync states are made for no erased one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import (
    SCHEDULER_ERASURES_CONSUMER,
    SYNC,
    ErasureFinished,
    ErasureRequested,
    erasures_finished_subject,
)
from callstream.runtime import Redelivery, Unprocessable, consume, get_logger, tracing, wait_for_postgres
from callstream.runtime._tracing import TRACEPARENT, TRACESTATE

from ._clock import Clock

log = get_logger(__name__)

SERVICE: Final = "scheduler"
# An erasure is rare and small here (a few hundred rows): one at a time is plenty.
FETCH_BATCH = 8
FETCH_TIMEOUT_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 5.0
REDELIVERY = Redelivery(first_delay=1.0, max_delay=30.0)

_decoder = msgspec.json.Decoder(ErasureRequested)


@dataclass(frozen=True, slots=True)
class ErasureDone:
    counts: dict[str, int]
    finished_at: datetime


def decode_request(data: bytes) -> ErasureRequested:
    """The request, or ``Unprocessable`` (dead-lettered: the same bytes would fail again)."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"{type(exc).__name__}: {exc}") from exc


def _uuids(ids: Sequence[str]) -> list[uuid.UUID]:
    # Every id of ours is a UUID; one that is not names no row here.
    parsed = []
    for value in ids:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            continue
    return parsed


def _scope(request: ErasureRequested) -> tuple[list[uuid.UUID], str | None]:
    # A workspace erasure also takes rows of the workspace's integrations the gateway no longer lists.
    return _uuids(request.integration_ids), request.workspace_id if request.scope == "workspace" else None


async def active_requests(pool: asyncpg.Pool, request: ErasureRequested) -> list[int]:
    """Stream sequences of the SYNC requests of the integrations' queued or running runs."""
    ids, workspace = _scope(request)
    rows = await pool.fetch(
        """select request_seq from sync_runs
           where (integration_id = any($1::uuid[]) or workspace_id = $2)
             and status in ('queued', 'running') and request_seq is not null""",
        ids,
        workspace,
    )
    return [r["request_seq"] for r in rows]


async def _delete(conn: asyncpg.Connection, table: str, ids: list[uuid.UUID], workspace: str | None) -> int:
    deleted = int((await conn.execute(f"delete from {table} where integration_id = any($1::uuid[])", ids)).split()[-1])
    if workspace is not None:  # a separate statement, so the one above keeps its index
        deleted += int((await conn.execute(f"delete from {table} where workspace_id = $1", workspace)).split()[-1])
    return deleted


async def erase(pool: asyncpg.Pool, request: ErasureRequested, now: datetime) -> ErasureDone:
    """Delete the integrations' rows and record the counts, in one transaction; a request carried
    out before reports the counts recorded then."""
    ids, workspace = _scope(request)
    async with pool.acquire() as conn, conn.transaction():
        # The state first: the due loop creates a run while it holds its state's row lock, so this
        # waits for a run being created now, and the runs' delete after it sees that run too.
        counts = {table: await _delete(conn, table, ids, workspace) for table in ("sync_state", "sync_runs")}
        stored = await conn.fetchrow(
            """insert into scheduler_erasures (erasure_id, counts, finished_at) values ($1, $2, $3)
               on conflict (erasure_id) do nothing
               returning counts, finished_at""",
            request.erasure_id,
            counts,
            now,
        )
        if stored is None:  # carried out before: what was reported then
            stored = await conn.fetchrow(
                "select counts, finished_at from scheduler_erasures where erasure_id = $1", request.erasure_id
            )
            assert stored is not None  # the insert conflicted with it
    return ErasureDone({k: int(v) for k, v in stored["counts"].items()}, stored["finished_at"])


async def withdraw(js: JetStreamContext, sequences: Sequence[int]) -> None:
    """Take requests out of the SYNC work queue; one a worker took already is gone (fine). Raises
    when the broker cannot answer: the erasure is retried."""
    for seq in sequences:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await js.delete_msg(SYNC, seq)
        except NotFoundError:
            pass


async def report(js: JetStreamContext, erasure_id: str, done: ErasureDone, msg: Msg | None = None) -> None:
    """Publish ``ErasureFinished`` and await the stream's ack; continues the request's trace."""
    finished = ErasureFinished(erasure_id=erasure_id, service=SERVICE, counts=done.counts, finished_at=done.finished_at)
    headers = {"Nats-Msg-Id": f"{erasure_id}:{SERVICE}"}
    for name in (TRACEPARENT, TRACESTATE):
        if msg is not None and msg.headers and name in msg.headers:
            headers[name] = msg.headers[name]
    if tracing.on:
        tracing.inject(headers)
    await js.publish(
        erasures_finished_subject(SERVICE),
        msgspec.json.encode(finished),
        headers=headers,
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )


async def handle(pool: asyncpg.Pool, js: JetStreamContext, clock: Clock, msg: Msg) -> ErasureDone:
    """One delivery of ``erasures.requested``: withdraw, erase, report. Any error but an unreadable
    request is transient (the runtime naks it with a delay); every step is idempotent."""
    request = decode_request(msg.data)
    await withdraw(js, await active_requests(pool, request))
    done = await erase(pool, request, clock.now())
    await report(js, request.erasure_id, done, msg)
    log.info("erasure part done", erasure_id=request.erasure_id, scope=request.scope, **done.counts)
    return done


async def consume_erasures(pool: asyncpg.Pool, js: JetStreamContext, clock: Clock, stopping: asyncio.Event) -> None:
    """The worker (under the runtime's supervisor): carry out erasure requests until stopping."""

    async def handler(msg: Msg) -> Any:
        return await handle(pool, js, clock, msg)

    await consume(
        js,
        SCHEDULER_ERASURES_CONSUMER,
        handler,
        stopping,
        batch=FETCH_BATCH,
        fetch_timeout=FETCH_TIMEOUT_SECONDS,
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(pool, stopping),
    )
