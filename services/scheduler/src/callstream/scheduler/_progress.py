"""A run's progress as Server-Sent Events: ``GET /v1/integrations/{id}/syncs/{run_id}/events``.

Source: the run row, which the scheduler's ``sync-events`` consumer keeps up to date from every
``SyncProgress``/``SyncFinished`` the pull workers publish. One ``progress`` worker per scheduler
process reads every watched run in **one query per interval** (``CALLSTREAM_SCHEDULER_PROGRESS_POLL_SECONDS``)
and fans each change out to that run's watchers, so a thousand browsers on one run cost what one
does. Why the row and not a subscription to ``sync.events.*``: the row is what every replica sees
(the replica serving a stream is rarely the one that applied the event), it already merges
redeliveries and out-of-order events, and a stream reading the subject would need its own
consumer per process with the subject's whole traffic.

Events:

- ``progress`` (``id: <n>``): status, pages, calls published, calls stored (created, updated or
  unchanged, as the normalizer reports them with ``SyncStored``), and the wait a run announced
  (``waiting_for``, ``resume_after``). ``n`` grows with the run: ``2 * pages`` (+1 while it waits)
  ``+ 2 * calls_stored``. Counts are cumulative, so pages that moved between two reads arrive as one
  event with the later counts: nothing is lost, and nothing older than what a client saw is ever
  sent again.
- ``finished`` (``id: end``): status (success, error, reauth_required, cancelled), counts, error;
  the stream then ends. It comes once the run has ended and the normalizer has reported every
  published call stored, or ``CALLSTREAM_SCHEDULER_PROGRESS_STORED_GRACE_SECONDS`` after the run
  ended if it never does (a call two runs published within the raw stream's duplicate window is
  stored once); until then a run that ended sends ``progress`` events with its final status.

Resuming: a client that reconnects with ``Last-Event-ID: <n>`` gets only states after ``n``; with
``Last-Event-ID: end`` it is answered 204, which tells an ``EventSource`` to stop reconnecting.
A stream of a run that has finished sends ``finished`` at once and ends. Bounded: each watcher has a
queue of ``QUEUE_SIZE`` states; a client that stops reading until it is full is dropped (its stream
ends), and at most ``CALLSTREAM_SCHEDULER_PROGRESS_MAX_WATCHERS`` streams are open per process (503).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Response, Router, get
from litestar.params import FromPath, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from callstream.runtime import AdminToken, ApiError, ManageGuard, ServiceRuntime, get_logger

log = get_logger(__name__)

QUEUE_SIZE = 32
HEARTBEAT_SECONDS = 15.0  # a comment line, so proxies keep the stream and dead clients are noticed
RETRY_MILLISECONDS = 2_000  # how soon an EventSource reconnects
END = "end"
ACTIVE = ("queued", "running")

_COLUMNS = (
    "id, integration_id, status, pages, calls_published, calls_created, calls_updated, calls_unchanged,"
    " calls_already_received,"
    " waiting_for, resume_after, started_at, last_progress_at, finished_at, error"
)
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class RunProgress(msgspec.Struct):
    """One state of a run, as sent in an event's ``data``."""

    run_id: str
    status: str
    pages: int
    calls_published: int
    calls_stored: int
    calls_created: int
    calls_updated: int
    waiting_for: str | None
    resume_after: datetime | None
    started_at: datetime | None
    last_progress_at: datetime | None
    finished_at: datetime | None
    error: str | None
    # Ended, and every published call reported stored (or the hub stopped waiting for them).
    complete: bool = msgspec.field(default=False)

    @classmethod
    def of(cls, row: Any) -> RunProgress:
        # At most what was published: a batch the normalizer stored again after a lost ack (as
        # unchanged, in another batch) is counted twice.
        stored = min(
            row["calls_published"],
            row["calls_created"] + row["calls_updated"] + row["calls_unchanged"] + row["calls_already_received"],
        )
        return cls(
            run_id=str(row["id"]),
            status=row["status"],
            pages=row["pages"],
            calls_published=row["calls_published"],
            calls_stored=stored,
            calls_created=row["calls_created"],
            calls_updated=row["calls_updated"],
            complete=row["status"] not in ACTIVE and stored >= row["calls_published"],
            waiting_for=row["waiting_for"],
            resume_after=row["resume_after"],
            started_at=row["started_at"],
            last_progress_at=row["last_progress_at"],
            finished_at=row["finished_at"],
            error=row["error"],
        )

    @property
    def finished(self) -> bool:
        return self.complete

    @property
    def seq(self) -> int:
        return 2 * self.pages + (1 if self.waiting_for else 0) + 2 * self.calls_stored


def _message(state: RunProgress) -> ServerSentEventMessage:
    data = msgspec.json.encode(state).decode()
    if state.finished:
        return ServerSentEventMessage(data=data, event="finished", id=END)
    return ServerSentEventMessage(data=data, event="progress", id=str(state.seq))


@dataclass(eq=False)
class Watcher:
    queue: asyncio.Queue[RunProgress] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


class TooManyWatchers(Exception):
    pass


class ProgressHub:
    """Every watched run of this process, read together each interval by :meth:`serve`."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        poll_seconds: float,
        max_watchers: int,
        stored_grace_seconds: float = 10.0,
    ) -> None:
        self._pool = pool
        self.poll_seconds = poll_seconds
        self.max_watchers = max_watchers
        self.stored_grace_seconds = stored_grace_seconds
        # Runs seen ended but not every call reported stored: since when their stored count last
        # moved (this process's clock), and that count.
        self._settling: dict[uuid.UUID, tuple[float, int]] = {}
        self._watchers: dict[uuid.UUID, set[Watcher]] = {}
        self._last: dict[uuid.UUID, RunProgress] = {}
        self._wake = asyncio.Event()

    @property
    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def subscribe(self, run_id: uuid.UUID) -> Watcher:
        if self.watching >= self.max_watchers:
            raise TooManyWatchers
        watcher = Watcher()
        self._watchers.setdefault(run_id, set()).add(watcher)
        self._wake.set()
        return watcher

    def unsubscribe(self, run_id: uuid.UUID, watcher: Watcher) -> None:
        watchers = self._watchers.get(run_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[run_id]
            self._last.pop(run_id, None)
            self._settling.pop(run_id, None)

    async def read(self, integration_id: uuid.UUID, run_id: uuid.UUID) -> RunProgress | None:
        row = await self._pool().fetchrow(
            f"select {_COLUMNS} from sync_runs where id = $1 and integration_id = $2",
            run_id,
            integration_id,
        )
        return None if row is None else self._settled(run_id, RunProgress.of(row))

    def _settled(self, run_id: uuid.UUID, state: RunProgress) -> RunProgress:
        """A run that ended is complete once every call it published is reported stored, or once
        no report has moved its stored count for the grace (a report can be lost), or, read by a
        late client, once it ended longer ago than the grace."""
        if state.complete or state.status in ACTIVE:
            self._settling.pop(run_id, None)
            return state
        now = asyncio.get_running_loop().time()
        since, seen = self._settling.get(run_id, (now, -1))
        if state.calls_stored != seen:  # the normalizer is still reporting: wait on from now
            since = now
            self._settling[run_id] = (since, state.calls_stored)
        waited = now - since
        ended = state.finished_at
        long_ago = ended is not None and (datetime.now(UTC) - ended).total_seconds() >= self.stored_grace_seconds
        if waited >= self.stored_grace_seconds or long_ago:
            self._settling.pop(run_id, None)
            return msgspec.structs.replace(state, complete=True)
        return state

    async def poll_once(self) -> None:
        ids = list(self._watchers)
        if not ids:
            return
        rows = await self._pool().fetch(
            f"select {_COLUMNS} from sync_runs where id = any($1::uuid[])",
            ids,
        )
        for row in rows:
            run_id = row["id"]
            state = self._settled(run_id, RunProgress.of(row))
            if self._last.get(run_id) == state:
                continue
            self._last[run_id] = state
            for watcher in list(self._watchers.get(run_id, ())):
                try:
                    watcher.queue.put_nowait(state)
                except asyncio.QueueFull:  # it stopped reading: drop it rather than buffer for it
                    watcher.dropped = True
                    self.unsubscribe(run_id, watcher)
                    log.info("progress watcher dropped: not reading", run_id=str(run_id))
            if state.finished:  # every watcher has its last state; they unsubscribe as they end
                self._last.pop(run_id, None)

    async def serve(self, runtime: ServiceRuntime) -> None:
        """The ``progress`` worker: poll while anyone watches, sleep on an event otherwise."""
        while not runtime.stopping.is_set():
            if not self._watchers:
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                stop = asyncio.create_task(runtime.stopping.wait())
                await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stop.cancel()
                continue
            try:
                await self.poll_once()
            except _TRANSIENT as exc:  # the database away: the watchers wait, the next read catches up
                log.info("run progress not read this time", error=type(exc).__name__)
            if await runtime.sleep(self.poll_seconds):
                return

    async def events(
        self, run_id: uuid.UUID, watcher: Watcher, first: RunProgress, after: int | None
    ) -> AsyncIterator[ServerSentEventMessage]:
        try:
            if first.finished:
                yield _with_retry(_message(first))
                return
            last = -1 if after is None else after
            if first.seq > last:
                yield _with_retry(_message(first))
                last = first.seq
            else:
                yield ServerSentEventMessage(data=None, comment="resumed", retry=RETRY_MILLISECONDS)
            while not watcher.dropped:
                try:
                    state = await asyncio.wait_for(watcher.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                if state.finished:
                    yield _message(state)
                    return
                if state.seq > last:
                    yield _message(state)
                    last = state.seq
        finally:
            self.unsubscribe(run_id, watcher)


def _with_retry(message: ServerSentEventMessage) -> ServerSentEventMessage:
    message.retry = RETRY_MILLISECONDS
    return message


def _after(last_event_id: str | None) -> int | None:
    if last_event_id is None:
        return None
    try:
        return max(int(last_event_id.strip()), -1)
    except ValueError:
        return None  # not an id of ours: the stream starts from the current state


def progress_router(hub: ProgressHub, admin: AdminToken | ManageGuard) -> Router:
    # ``admin``: the admin token, or (a ManageGuard) also a manage token of the integration's
    # workspace (issue #18 item 1); another workspace's integration is a 404.
    @get("/integrations/{integration_id:uuid}/syncs/{run_id:uuid}/events")
    async def run_events(
        integration_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
    ) -> ServerSentEvent | Response[None]:
        if last_event_id is not None and last_event_id.strip() == END:
            if await hub.read(integration_id, run_id) is None:
                raise ApiError(404, "run_not_found", "no such run of this integration")
            return Response(None, status_code=204)  # the client saw the end: EventSource stops
        try:
            watcher = hub.subscribe(run_id)  # before the read, so no change falls between the two
        except TooManyWatchers:
            raise ApiError(503, "too_many_streams", "too many progress streams are open; retry later") from None
        try:
            first = await hub.read(integration_id, run_id)
        except BaseException:
            hub.unsubscribe(run_id, watcher)
            raise
        if first is None:
            hub.unsubscribe(run_id, watcher)
            raise ApiError(404, "run_not_found", "no such run of this integration")
        return ServerSentEvent(
            hub.events(run_id, watcher, first, _after(last_event_id)),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return Router(path="/v1", guards=[admin], route_handlers=[run_events])
