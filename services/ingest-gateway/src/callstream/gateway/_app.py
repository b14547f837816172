"""Wires the ingest-gateway: routes, connections, background workers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import httpx
from litestar import Litestar

from callstream.runtime import RequestMetrics, ServiceRuntime, create_app

from ._admin import admin_router
from ._context import GatewayContext
from ._erasures import Erasures, erasure_worker
from ._gauges import add_gauge_workers
from ._hot import HotWebhooks
from ._integrations import IntegrationStore
from ._oauth_routes import oauth_routers
from ._secret_cache import WebhookSecretCache
from ._settings import Settings
from ._webhooks import FathomWebhooks, fathom_webhook_handler
from .pull import load_pull_settings, pull_worker

YOUNG_GC_THRESHOLD = 10_000  # allocations between collections of the youngest generation (default 700)


def build_app(settings: Settings, *, http: httpx.AsyncClient | None = None) -> Litestar:
    """``http`` replaces the client used towards providers (tests point it at fakes)."""
    runtime = ServiceRuntime(settings)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(settings.provider_timeout_seconds))
    integrations = IntegrationStore.from_settings(lambda: runtime.db, settings, http=http)
    cipher = settings.cipher()
    cache = WebhookSecretCache(cipher, settings.secret_cache_ttl_seconds)
    ctx = GatewayContext(settings, runtime, cipher, http, integrations, cache)
    webhooks = FathomWebhooks(settings, cache, runtime.broker)
    pull_settings = load_pull_settings()
    erasures = Erasures(ctx, pull_settings)
    runtime.add_worker("webhook-secrets", lambda rt: cache.run(rt.db, rt.stopping))
    # Webhooks do not need the pulls: a pull worker down is reported, not a reason to stop intake.
    runtime.add_worker(
        "pull", pull_worker(settings, store=integrations, http=http, pull_settings=pull_settings), critical=False
    )
    # Nor the record of other services' parts of erasures: it catches up from its durable consumer.
    runtime.add_worker("erasures", erasure_worker, critical=False)
    runtime.add_worker("erasure-resume", lambda rt: erasures.resume(rt.stopping), critical=False)
    add_gauge_workers(runtime)

    @contextlib.asynccontextmanager
    async def close_http(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await http.aclose()

    @contextlib.asynccontextmanager
    async def freeze_startup_heap(_: Litestar) -> AsyncIterator[None]:
        # Everything imported and built at start lives as long as the process: keep it out of the
        # cyclic GC, whose full collections otherwise rescan it while webhooks wait (p99).
        gc.collect()
        gc.freeze()
        # A webhook's objects die by reference counting; at the default threshold (700) the young
        # generation was still collected every ~20 webhooks, ~25 us of each one's CPU under load
        # (measured with gc.callbacks). Rarer young collections leave cycles alive a little longer.
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        yield

    app = create_app(
        service=settings.service_name,
        title="callstream ingest-gateway",
        description="Fathom webhooks, integrations, OAuth connect, API tokens and provider pulls.",
        route_handlers=[
            fathom_webhook_handler(webhooks),
            *admin_router(ctx, erasures),
            *oauth_routers(ctx),
        ],
        checks=runtime.checks(),
        admin=settings.admin(),
        lifespan=[close_http, runtime.lifespan, freeze_startup_heap],
    )
    # In front of litestar's handler, inside the app: lifespan, state and scope stay litestar's.
    # Its answers bypass app middleware and CORS: add either, and add it to _hot.py too.
    hot = HotWebhooks(app.asgi_handler, webhooks, RequestMetrics(settings.service_name))
    app.asgi_handler = hot
    app.state.hot_webhooks = hot
    app.state.runtime = runtime
    app.state.gateway = ctx
    app.state.webhook_secrets = cache
    return app
