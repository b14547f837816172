"""Wires the linker: routes, the read-only pool, the hot-link cache and its event feed."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import Litestar
from litestar.openapi.spec import SecurityScheme

from callstream.runtime import AsgiOverRsgi, ClientRateLimit, RequestMetrics, ServiceRuntime, create_app

from ._auth import Authenticator
from ._cache import LinkCache, MessageEventFeed
from ._contacts import build_contacts_router
from ._data_points import build_data_points_router
from ._etag import etag_middleware
from ._feature_links import build_feature_links_router
from ._hot import HotLinks
from ._lookup import LinkLookup
from ._observe import LINK_CACHE_METRICS
from ._routes import build_router
from ._settings import Settings


def read_only_dsn(dsn: str) -> str:
    """The DSN with ``default_transaction_read_only=on`` (asyncpg passes unknown query parameters
    as server settings): even a role that could write, cannot, through the linker."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "default_transaction_read_only"]
    query.append(("default_transaction_read_only", "on"))
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.asynccontextmanager
async def _frozen_heap(_: Litestar) -> AsyncIterator[None]:
    """Move everything built at start-up (modules, the app, the OpenAPI schema) out of the cyclic
    collector's reach: a full collection then walks only what requests create, instead of pausing
    every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def build_app(settings: Settings) -> Litestar:
    runtime = ServiceRuntime(
        settings, database_url=read_only_dsn(settings.read_database_url), pool_max=settings.pool_max
    )
    feed = MessageEventFeed(runtime.broker)
    cache = LinkCache(settings.cache_entries, settings.cache_max_age_seconds, feed.state)
    feed.cache = cache
    # Without the feed the cache is off and links are read from the database: degraded, still serving.
    runtime.add_worker("link-cache-feed", lambda rt: feed.run(rt.stopping), critical=False)
    lookup = LinkLookup(lambda: runtime.db, cache, settings.allowed_hosts)
    authenticate = Authenticator(
        lambda: runtime.db,
        settings.admin(),
        settings.token_cache_seconds,
        unknown_tokens=ClientRateLimit(settings.unknown_token_rate, settings.unknown_token_burst),
    )
    routers = build_router(lookup, authenticate)
    routers.append(build_data_points_router(lookup, authenticate, runtime.broker))
    routers.append(build_feature_links_router(lambda: runtime.db, runtime.broker, authenticate))
    routers.append(build_contacts_router(lookup, authenticate))
    for router in routers:
        router.middleware.append(etag_middleware)
    app = create_app(
        service=settings.service_name,
        title="callstream linker",
        description="Resolved, safe links to the original of a call, and the messages behind them.",
        route_handlers=[*routers],
        checks=runtime.checks(),
        admin=settings.admin(),
        lifespan=[runtime.lifespan, _frozen_heap],
    )
    openapi = app.openapi_schema  # built once, here, and served as is
    if openapi.components.security_schemes is None:
        openapi.components.security_schemes = {}
    openapi.components.security_schemes["bearer"] = SecurityScheme(
        type="http", scheme="bearer", description="a token from the gateway's /v1/tokens, or the linker's admin token"
    )
    # In front of litestar's handler, inside the app: lifespan, state and scope stay litestar's.
    # Its answers bypass app middleware and CORS: add either, and add it to _hot.py too.
    hot = HotLinks(app.asgi_handler, lookup, authenticate, RequestMetrics(settings.service_name))
    app.asgi_handler = hot
    app.state.hot_links = hot
    LINK_CACHE_METRICS.track(settings.service_name, hot, cache, feed)
    app.state.runtime = runtime
    app.state.link_cache = cache
    app.state.event_feed = feed
    return app


def build_served_app(settings: Settings) -> AsgiOverRsgi:
    """The app as ``callstream-linker serve`` serves it: on granian, cached links are answered
    over RSGI before any ASGI work (``bench/linker``); under uvicorn, the app as built."""
    app = build_app(settings)
    return AsgiOverRsgi(app, first=app.state.hot_links.answer_rsgi)
