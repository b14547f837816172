"""Wires the ingest-gateway: routes, connections, background workers."""

from __future__ import annotations

from litestar import Litestar

from callstream.runtime import ServiceRuntime, create_app

from ._settings import Settings


def build_app(settings: Settings) -> Litestar:
    runtime = ServiceRuntime(settings)
    app = create_app(
        service=settings.service_name,
        title="callstream ingest-gateway",
        description="Fathom webhooks, integrations and provider pulls.",
        route_handlers=[],
        checks=runtime.checks(),
        lifespan=[runtime.lifespan],
    )
    app.state.runtime = runtime
    return app
