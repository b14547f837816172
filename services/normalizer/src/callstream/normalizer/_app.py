"""Wires the normalizer: health and metrics, connections, and the background workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from litestar import Litestar

from callstream.runtime import ServiceRuntime, create_app, get_logger, periodic

from ._api import admin_router
from ._backlog import add_backlog_workers
from ._consumer import run_raw_call_consumer
from ._data_points import run_data_point_consumer
from ._erasure import run_erasure_consumer
from ._features import run_feature_consumer, sweep_pending_links
from ._outbox import run_outbox_relay
from ._rederive import rederive_job
from ._retention import retention_job
from ._settings import Settings
from ._tombstones import run_listing_consumer
from ._topology import ensure_topology

log = get_logger(__name__)

Worker = Callable[[ServiceRuntime, Settings], Awaitable[None]]


def _after_topology(worker: Worker, settings: Settings) -> Callable[[ServiceRuntime], Awaitable[None]]:
    """The worker, once its streams and consumers are declared. A declaration that fails (the
    broker slow or away) fails the worker, and the supervisor tries again with backoff; a
    restart after a consumer was deleted declares it again."""

    async def run(runtime: ServiceRuntime) -> None:
        await runtime.broker.wait_connected()
        await ensure_topology(runtime.broker.js, settings.stream_replicas)
        await worker(runtime, settings)

    return run


def build_runtime(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, pool_max=settings.pool_size)
    runtime.add_worker("raw-calls", _after_topology(run_raw_call_consumer, settings))
    runtime.add_worker("outbox-relay", _after_topology(run_outbox_relay, settings))
    runtime.add_worker("feature-links", _after_topology(run_feature_consumer, settings))
    runtime.add_worker("data-points", _after_topology(run_data_point_consumer, settings))
    runtime.add_worker("listings", _after_topology(run_listing_consumer, settings))
    runtime.add_worker("erasures", _after_topology(run_erasure_consumer, settings))
    runtime.add_worker("pending-link-sweep", periodic(sweep_pending_links, settings.link_sweep_seconds))
    if settings.rederive_seconds > 0:  # older-shape rows to the current shape (_rederive.py)
        runtime.add_worker("rederive", periodic(rederive_job(settings), settings.rederive_seconds), critical=False)
    if settings.retention_seconds > 0:  # workspaces' message retention (_retention.py)
        job = retention_job(settings, lambda: datetime.now(UTC))
        runtime.add_worker("retention", periodic(job, settings.retention_seconds), critical=False)
    add_backlog_workers(runtime)
    return runtime


def build_app(settings: Settings) -> Litestar:
    runtime = build_runtime(settings)
    app = create_app(
        service=settings.service_name,
        title="callstream normalizer",
        description="raw calls to messages and customers, message events via an outbox.",
        route_handlers=[admin_router(lambda: runtime.db, settings.admin(), lambda: runtime.broker.js)],
        checks=runtime.checks(),
        admin=settings.admin(),
        lifespan=[runtime.lifespan],
    )
    app.state.runtime = runtime
    return app
