"""Wires the scheduler: admin routes, connections, the due loop and the sync-events consumer."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar
from nats.js import JetStreamContext

from callstream.runtime import ServiceRuntime, create_app, get_logger

from ._api import admin_router
from ._clock import Clock, SystemClock
from ._events import consume_events
from ._scheduler import Scheduler
from ._settings import Settings
from ._store import SyncStore

log = get_logger(__name__)

WORKER_RESTART_SECONDS = 2.0


def build_scheduler(runtime: ServiceRuntime, settings: Settings, clock: Clock) -> Scheduler:
    def jetstream() -> JetStreamContext | None:
        return runtime.broker.js if runtime.broker.is_connected else None

    return Scheduler(SyncStore(lambda: runtime.db, settings.policy()), clock, jetstream)


async def _sleep_unless_stopping(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


def build_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    runtime = ServiceRuntime(settings)
    scheduler = build_scheduler(runtime, settings, clock or SystemClock())

    async def due_loop(rt: ServiceRuntime) -> None:
        while not rt.stopping.is_set():
            try:
                await scheduler.tick()
            except Exception as exc:  # database or broker away: the next tick tries again
                log.warning("due loop tick failed", error=type(exc).__name__, detail=str(exc)[:200])
            await _sleep_unless_stopping(rt.stopping, settings.loop_seconds)

    async def sync_events(rt: ServiceRuntime) -> None:
        await rt.broker.wait_connected()
        while not rt.stopping.is_set():
            try:
                await consume_events(scheduler, rt.broker.js, rt.stopping)
            except Exception as exc:
                log.warning("sync events consumer restarting", error=type(exc).__name__, detail=str(exc)[:200])
                await _sleep_unless_stopping(rt.stopping, WORKER_RESTART_SECONDS)

    runtime.add_worker("due-loop", due_loop)
    runtime.add_worker("sync-events", sync_events)
    app = create_app(
        service=settings.service_name,
        title="callstream scheduler",
        description="when to pull, sync state and run history.",
        route_handlers=[admin_router(lambda: scheduler, settings.admin_token)],
        checks=runtime.checks(),
        lifespan=[runtime.lifespan],
    )
    app.state.runtime = runtime
    app.state.scheduler = scheduler
    return app
