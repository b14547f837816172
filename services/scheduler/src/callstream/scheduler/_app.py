"""Wires the scheduler: admin routes, connections, the due loop, the sync-events consumer and its
part of erasures."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from litestar import Litestar
from nats.js import JetStreamContext

from callstream.runtime import ApiError, ManageGuard, ServiceRuntime, create_app, get_logger, periodic

from ._api import admin_router
from ._clock import Clock, SystemClock
from ._erasures import consume_erasures
from ._events import consume_events
from ._gauges import add_gauge_workers
from ._health import health_router
from ._progress import ProgressHub, progress_router
from ._scheduler import Scheduler
from ._settings import Settings
from ._store import SyncStore

log = get_logger(__name__)


def build_scheduler(runtime: ServiceRuntime, settings: Settings, clock: Clock) -> Scheduler:
    def jetstream() -> JetStreamContext | None:
        return runtime.broker.js if runtime.broker.is_connected else None

    return Scheduler(SyncStore(lambda: runtime.db, settings.policy()), clock, jetstream)


def build_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    runtime = ServiceRuntime(settings)
    scheduler = build_scheduler(runtime, settings, clock or SystemClock())

    async def tick(_: ServiceRuntime) -> None:
        await scheduler.tick()

    async def sync_events(rt: ServiceRuntime) -> None:
        await rt.broker.wait_connected()
        await consume_events(scheduler, rt.broker.js, rt.stopping, rt.db)

    async def erasures(rt: ServiceRuntime) -> None:
        await rt.broker.wait_connected()
        await consume_erasures(rt.db, rt.broker.js, scheduler.clock, rt.stopping)

    # A tick that fails (database or broker away) fails the worker: the supervisor restarts it
    # with backoff, and readiness names it while the failures last longer than the grace period.
    runtime.add_worker("due-loop", periodic(tick, settings.loop_seconds))
    runtime.add_worker("sync-events", sync_events)
    runtime.add_worker("erasures", erasures)
    hub = ProgressHub(
        lambda: runtime.db,
        poll_seconds=settings.progress_poll_seconds,
        max_watchers=settings.progress_max_watchers,
        stored_grace_seconds=settings.progress_stored_grace_seconds,
    )
    runtime.add_worker("progress", hub.serve, critical=False)  # without it streams just stop moving
    add_gauge_workers(runtime, scheduler.clock)
    # The admin token, or a manage token for its own workspaces' integrations (#18): sync requests,
    # cancel, run history and progress events, sync state and health (runtime's one rule).
    access = ManageGuard(settings.admin(), lambda: runtime.db, _workspace_of, _no_such_integration)
    app = create_app(
        service=settings.service_name,
        title="callstream scheduler",
        description="when to pull, sync state and run history.",
        route_handlers=[
            admin_router(lambda: scheduler, access),
            progress_router(hub, access),
            health_router(
                lambda: runtime.db,
                scheduler.clock,
                timedelta(seconds=settings.health_stuck_after_seconds),
                access,
            ),
        ],
        checks=runtime.checks(),
        admin=settings.admin(),
        lifespan=[runtime.lifespan],
    )
    app.state.runtime = runtime
    app.state.scheduler = scheduler
    return app


async def _workspace_of(pool: asyncpg.Pool, integration_id: uuid.UUID) -> str | None:
    workspace_id: str | None = await pool.fetchval(
        "select workspace_id from integrations where id = $1", integration_id
    )
    return workspace_id


def _no_such_integration() -> ApiError:
    return ApiError(404, "integration_not_found", "no such integration")
