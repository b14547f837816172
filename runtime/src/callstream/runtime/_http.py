"""The HTTP conventions every callstream service shares: health, metrics, request ids, errors.

Errors are always a small JSON body ``{"error": code, "detail": ...}`` so that a client can branch
on ``error`` without parsing prose.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusController
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from ._logging import get_logger
from ._metrics import observe_middleware_factory

if TYPE_CHECKING:
    from ._admin import AdminToken

log = get_logger(__name__)

Check = Callable[[], Awaitable[str | None]]
READY_TIMEOUT_SECONDS = 2.0


class ApiError(HTTPException):
    """An HTTP error with a stable machine-readable code."""

    def __init__(self, status_code: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=dict(headers or {}))
        self.error = error


def error_response(status: int, error: str, detail: Any, headers: Mapping[str, str] | None = None) -> Response[Any]:
    return Response(
        {"error": error, "detail": detail},
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error answer: a stable machine-readable code and a human detail."""

    error: str
    detail: Any


# Documented on every operation that does not document them itself: any operation can be given a
# malformed request, wrong credentials or an id that does not exist (schemathesis checks this).
DEFAULT_ERROR_RESPONSES: dict[int, str] = {
    400: "the request is malformed: bad JSON, a wrong type, a value out of range",
    401: "no bearer token, or a wrong one",
    404: "not found, or not visible with these credentials",
}


_ENCODE_ERROR = msgspec.json.Encoder().encode


def api_error_answer(exc: ApiError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An :class:`ApiError` as status, headers and body of a raw ASGI answer: what the app's
    exception handler sends for it, for code that answers in front of the framework."""
    body = _ENCODE_ERROR(ErrorBody(error=exc.error, detail=exc.detail))
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (exc.headers or {}).items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return exc.status_code, headers, body


def _document_default_errors(app: Litestar) -> None:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            responses = dict(handler.responses or {})
            for status, description in DEFAULT_ERROR_RESPONSES.items():
                responses.setdefault(status, ResponseSpec(ErrorBody, description=description))
            handler.responses = responses


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = getattr(exc, "error", None) or _slug(exc.status_code)
    detail: Any = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = {"message": exc.detail, "fields": exc.extra}
    return error_response(exc.status_code, code, detail, exc.headers)


def _unhandled_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred; see the service log")


def _state(result: object) -> str:
    """What anyone may know of one check: ok, degraded (serving, something optional down) or failing."""
    return "ok" if result is None else "degraded" if isinstance(result, str) else "failing"


def _detail(result: object) -> str:
    """The check's own words: a note, or the error's type and text (which may name the database's
    host, user and name): for the log and the admin only."""
    if result is None:
        return "ok"
    return result if isinstance(result, str) else f"{type(result).__name__}: {result}"[:200]


def health_handlers(checks: Mapping[str, Check], admin: AdminToken | None = None) -> list[ControllerRouterHandler]:
    logged: dict[str, dict[str, str]] = {"states": {}}

    @get("/health/live", include_in_schema=False, sync_to_thread=False)
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", include_in_schema=False)
    async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        names = list(checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(checks[n](), READY_TIMEOUT_SECONDS) for n in names), return_exceptions=True
        )
        # A check answers None when all is well, a short note for something degraded that must not
        # take the service out of rotation (an optional worker down), or raises.
        states = {n: _state(r) for n, r in zip(names, results, strict=False)}
        ok = all(state != "failing" for state in states.values())
        status = "ready" if ok else "not_ready"
        # The details go to the log once per change of state (a probe every few seconds would
        # otherwise repeat them), never to an anonymous caller: an error's text names hosts,
        # users and databases.
        if states != logged["states"]:
            details = {n: _detail(r) for n, r in zip(names, results, strict=False) if r is not None}
            if details:
                log.warning("readiness", status=status, checks=details)
            elif logged["states"]:
                log.info("readiness", status=status)
            logged["states"] = states
        body: dict[str, Any] = {"status": status, "checks": states}
        if admin is not None and admin.accepts_header(request.headers.get("authorization", "")):
            body["checks"] = {n: _detail(r) for n, r in zip(names, results, strict=False)}
        return Response(body, status_code=200 if ok else 503)

    return [live, ready]


# Swagger UI's page loads its script and styles from a CDN by default: blank on a machine without internet
# access, and a third party told of every visit. The swagger-ui-py distribution ships Swagger UI 5 (the
# first to render the OpenAPI 3.1 documents litestar writes); its static folder is served as it is.
# find_spec locates the folder without importing the package (which would import its framework glue).
SWAGGER_ASSETS_PATH = "/schema/assets"


def _swagger_ui() -> tuple[SwaggerRenderPlugin, ControllerRouterHandler]:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: the runtime depends on it for /schema/swagger")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    assets = create_static_files_router(path=SWAGGER_ASSETS_PATH, directories=[static], include_in_schema=False)
    plugin = SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS_PATH}/favicon-32x32.png'>",
    )
    return plugin, assets


def create_app(
    *,
    service: str,
    title: str,
    route_handlers: Sequence[ControllerRouterHandler],
    checks: Mapping[str, Check],
    admin: AdminToken | None = None,
    lifespan: Sequence[Any] = (),
    version: str = "0.1.0",
    description: str | None = None,
    **kwargs: Any,
) -> Litestar:
    """The one place a service's routes, health, metrics, errors and OpenAPI are wired. With
    ``admin``, a caller presenting that service's admin token gets readiness with its details."""

    class Metrics(PrometheusController):
        path = "/metrics"
        include_in_schema = False

    swagger, swagger_assets = _swagger_ui()
    app = Litestar(
        route_handlers=[*route_handlers, *health_handlers(checks, admin), Metrics, swagger_assets],
        middleware=[observe_middleware_factory(service)],
        exception_handlers={HTTPException: _http_exception_handler, Exception: _unhandled_exception_handler},
        lifespan=list(lifespan),
        openapi_config=OpenAPIConfig(
            title=title,
            version=version,
            description=description,
            path="/schema",
            render_plugins=[JsonRenderPlugin(), swagger],
        ),
        logging_config=None,
        **kwargs,
    )
    _document_default_errors(app)
    return app
