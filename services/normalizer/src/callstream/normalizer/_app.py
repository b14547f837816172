"""Wires the normalizer: health and metrics, connections, and the background workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import Litestar

from callstream.runtime import ServiceRuntime, create_app, get_logger

from ._consumer import run_raw_call_consumer, sleep_unless_stopping
from ._errors import retry_delay
from ._features import run_feature_consumer, run_pending_link_sweep
from ._outbox import run_outbox_relay
from ._settings import Settings
from ._topology import ensure_topology

log = get_logger(__name__)

Worker = Callable[[ServiceRuntime, Settings], Awaitable[None]]


def _after_topology(worker: Worker, settings: Settings) -> Callable[[ServiceRuntime], Awaitable[None]]:
    async def run(runtime: ServiceRuntime) -> None:
        await runtime.broker.wait_connected()
        attempt = 0
        while not runtime.stopping.is_set():
            try:
                await ensure_topology(runtime.broker.js, settings.stream_replicas)
                break
            except Exception as exc:
                attempt += 1
                log.warning("streams not ready, retrying", error=type(exc).__name__, detail=str(exc)[:200])
                await sleep_unless_stopping(runtime.stopping, retry_delay(attempt, 0.5, 5.0))
        await worker(runtime, settings)

    return run


def build_runtime(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, pool_max=settings.pool_size)
    runtime.add_worker("raw-calls", _after_topology(run_raw_call_consumer, settings))
    runtime.add_worker("outbox-relay", _after_topology(run_outbox_relay, settings))
    runtime.add_worker("feature-links", _after_topology(run_feature_consumer, settings))
    runtime.add_worker("pending-link-sweep", lambda rt: run_pending_link_sweep(rt, settings))
    return runtime


def build_app(settings: Settings) -> Litestar:
    runtime = build_runtime(settings)
    app = create_app(
        service=settings.service_name,
        title="callstream normalizer",
        description="raw calls to messages and customers, message events via an outbox.",
        route_handlers=[],
        checks=runtime.checks(),
        lifespan=[runtime.lifespan],
    )
    app.state.runtime = runtime
    return app
