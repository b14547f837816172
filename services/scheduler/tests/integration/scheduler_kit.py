"""Helpers for the scheduler's integration tests: a simulated clock, a stand-in pull worker, table reads."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import nats.errors
from nats.js import JetStreamContext

from callstream.contracts import (
    GATEWAY_PULL_CONSUMER,
    SCHEDULER_CONSUMER,
    SyncFinished,
    SyncProgress,
    SyncRequested,
    sync_events_subject,
)
from callstream.scheduler import Clock, Policy, Scheduler, SyncStore
from callstream.scheduler._events import handle_message

START = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)


ADMIN_TOKEN = "admin-token-for-tests-0123456789"  # the admin token of the ``client`` fixture


class FakeClock:
    """A clock that moves only when the test says so; shared by every scheduler of a test."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


def make_scheduler(
    pool: asyncpg.Pool, clock: FakeClock, js: JetStreamContext | None, policy: Policy | None = None
) -> Scheduler:
    return Scheduler(SyncStore(lambda: pool, policy or Policy()), clock, lambda: js)


async def add_integration(
    pool: asyncpg.Pool,
    provider: str = "fathom",
    *,
    status: str = "active",
    settings: dict[str, Any] | None = None,
    workspace_id: str = "ws-1",
    updated_at: datetime | None = None,
    parked_until: datetime | None = None,
) -> uuid.UUID:
    """Stands in for the gateway creating an integration (the scheduler only ever reads this table).
    ``parked_until`` also gives it a sync state not due before then, in the same transaction, so
    that a due loop running in the background leaves it alone."""
    integration_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """insert into integrations (id, workspace_id, provider, status, auth_kind, settings, updated_at)
               values ($1, $2, $3, $4, 'api_key', $5, coalesce($6, now()))""",
            integration_id,
            workspace_id,
            provider,
            status,
            settings or {},
            updated_at,
        )
        if parked_until is not None:
            await conn.execute(
                """insert into sync_state (integration_id, workspace_id, provider, status, cadence_anchor,
                                           next_due_at, created_at, updated_at)
                   values ($1, $2, $3, 'pending', $4, $4, $4, $4)""",
                integration_id,
                workspace_id,
                provider,
                parked_until,
            )
    return integration_id


async def runs_of(pool: asyncpg.Pool, integration_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch("select * from sync_runs where integration_id = $1 order by created_at, id", integration_id)
    )


async def state_of(pool: asyncpg.Pool, integration_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("select * from sync_state where integration_id = $1", integration_id)
    assert row is not None
    return row


Outcome = Callable[[SyncRequested], str]


class StandInWorker:
    """The gateway's pull worker as the contracts describe it: take a ``SyncRequested`` from the
    SYNC work queue (durable ``gateway-pull``), publish one ``SyncProgress`` per page and a
    ``SyncFinished`` to ``sync.events.<provider>``, then ack. Used until the real workers land."""

    def __init__(
        self,
        js: JetStreamContext,
        clock: Clock,
        *,
        pages: int = 2,
        calls_per_page: int = 3,
        outcome: Outcome = lambda _: "success",
    ) -> None:
        self.js = js
        self.clock = clock
        self.pages = pages
        self.calls_per_page = calls_per_page
        self.outcome = outcome
        self.seen: list[SyncRequested] = []
        self._sub: Any = None

    async def take(self, limit: int = 100) -> list[Any]:
        info = await self.js.consumer_info(GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable)
        if info.num_pending == 0:  # skip a fetch that would only wait for its timeout
            return []
        if self._sub is None:
            self._sub = await self.js.pull_subscribe_bind(
                durable=GATEWAY_PULL_CONSUMER.durable, stream=GATEWAY_PULL_CONSUMER.stream
            )
        try:
            return list(await self._sub.fetch(limit, timeout=1.0))
        except (nats.errors.TimeoutError, TimeoutError):
            return []

    async def progress(self, request: SyncRequested, page: int) -> None:
        event = SyncProgress(
            run_id=request.run_id,
            integration_id=request.integration_id,
            page=page,
            calls_published=page * self.calls_per_page,
            checkpoint=f"cursor-{page}",
            at=self.clock.now(),
        )
        await self.js.publish(
            sync_events_subject(request.provider),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": f"{request.run_id}-p{page}"},
        )

    async def wait(self, request: SyncRequested, page: int, seconds: float, reason: str) -> None:
        """What the worker says when it releases a run to wait (a Retry-After, a spent quota)."""
        now = self.clock.now()
        event = SyncProgress(
            run_id=request.run_id,
            integration_id=request.integration_id,
            page=page,
            calls_published=page * self.calls_per_page,
            checkpoint=f"cursor-{page}",
            resume_after=now + timedelta(seconds=seconds),
            waiting_for=reason,
            at=now,
        )
        await self.js.publish(
            sync_events_subject(request.provider),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": f"{request.run_id}-w{now.timestamp()}"},
        )

    async def finish(self, request: SyncRequested, status: str, error: str | None = None) -> None:
        event = SyncFinished(
            run_id=request.run_id,
            integration_id=request.integration_id,
            status=status,  # type: ignore[arg-type]
            pages=self.pages,
            calls_published=self.pages * self.calls_per_page,
            checkpoint=f"cursor-{self.pages}",
            watermark=request.window.end if status == "success" else None,
            error=error if error is not None else (None if status == "success" else f"provider said {status}"),
            at=self.clock.now(),
        )
        await self.js.publish(
            sync_events_subject(request.provider),
            msgspec.json.encode(event),
            headers={"Nats-Msg-Id": f"{request.run_id}-fin"},
        )

    async def work(self) -> list[SyncRequested]:
        done = []
        for msg in await self.take():
            request = msgspec.json.decode(msg.data, type=SyncRequested)
            self.seen.append(request)
            for page in range(1, self.pages + 1):
                await self.progress(request, page)
            await self.finish(request, self.outcome(request))
            await msg.ack_sync()
            done.append(request)
        return done


# One subscription per connection, reused across calls (a fetch on a new one costs a round trip).
_event_subs: weakref.WeakKeyDictionary[JetStreamContext, Any] = weakref.WeakKeyDictionary()


async def drain_events(scheduler: Scheduler, js: JetStreamContext) -> list[str]:
    """Let ``scheduler`` consume every pending sync event through the durable consumer."""
    outcomes: list[str] = []
    while True:
        info = await js.consumer_info(SCHEDULER_CONSUMER.stream, SCHEDULER_CONSUMER.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return outcomes
        sub = _event_subs.get(js)
        if sub is None:
            sub = await js.pull_subscribe_bind(durable=SCHEDULER_CONSUMER.durable, stream=SCHEDULER_CONSUMER.stream)
            _event_subs[js] = sub
        try:
            messages = await sub.fetch(64, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in messages:
            outcomes.append(await handle_message(scheduler, js, msg))


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's runtime (pool, broker, workers) on this test's loop and talk to it over ASGI."""
    runtime = app.state.runtime
    await runtime.start()
    try:
        await asyncio.wait_for(runtime.broker.wait_connected(), timeout=10)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scheduler") as client:
            yield client
    finally:
        await runtime.stop()
