"""Cache hits of ``GET /v1/links`` answered in front of the framework.

A look-up by provider identity whose token and link are already in memory is a few dictionary
reads; through litestar's routing, parameter parsing, dependency resolution and response
rendering it costs ~10 times as much, and with 64 connections on one process that cost queues into
the p99 (``bench/linker``). This layer answers exactly those requests, with the bytes and headers
the route would send (``test_linker_hot_links.py`` compares them), and hands everything else to
the app untouched: cache misses, unusual or invalid parameters, tokens not looked up yet or
unknown, workspaces the token does not cover, other methods and routes. Their answers, errors
included, stay the route's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar, get_args

from litestar._asgi.utils import is_valid_host
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Send

from callstream.contracts import Source
from callstream.runtime import RequestMetrics, SpanKind, get_logger, request_id, tracing

from ._auth import Authenticator
from ._etag import etag_matches
from ._lookup import LinkLookup, RenderedLink
from ._routes import CACHE_CONTROL, MAX_EXTERNAL_ID, WORKSPACE_PATTERN

log = get_logger(__name__)

PATH = "/v1/links"
_WORKSPACE = re.compile(WORKSPACE_PATTERN)
_SOURCES = frozenset(get_args(Source))
_NAMES = frozenset(("workspace_id", "source", "external_id"))
# The order the docs, the bench and every client we know send, with every rule of _in_any_order in
# it: one C call on granian's text (0.6 µs in a tight loop here, against 2 µs for the byte rules).
_CANONICAL = re.compile(
    rf"workspace_id=({WORKSPACE_PATTERN.strip('^$')})"
    rf"&source=({'|'.join(map(re.escape, sorted(_SOURCES)))})"
    rf"&external_id=([\x00-\x24\x27-\x2a\x2c-\x7f]{{1,{MAX_EXTERNAL_ID}}})"  # ASCII but & % +
)
_CACHE_CONTROL = (b"cache-control", CACHE_CONTROL.to_header().encode())
_VARY = (b"vary", b"Authorization")
_CACHE_CONTROL_TEXT = ("cache-control", CACHE_CONTROL.to_header())
_VARY_TEXT = ("vary", "Authorization")
_JSON_TEXT = ("content-type", "application/json")
_T = TypeVar("_T")


def link_identity(query: str) -> tuple[str, str, str] | None:
    """``(workspace_id, source, external_id)`` from a query string (granian's RSGI text, or ASGI's
    bytes read as latin-1) that names each exactly once, plainly (no escapes) and validly;
    ``None`` sends the request down the full path."""
    canonical = _CANONICAL.fullmatch(query)
    if canonical is not None:
        return canonical.groups()  # type: ignore[return-value]  # three groups, each one matched
    return _in_any_order(query)


def _in_any_order(query: str) -> tuple[str, str, str] | None:
    if not query.isascii() or "%" in query or "+" in query:
        return None
    values: dict[str, str] = {}
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if not sep or name not in _NAMES or name in values:
            return None
        values[name] = value
    if len(values) != 3:
        return None
    workspace_id, source, external_id = values["workspace_id"], values["source"], values["external_id"]
    if not _WORKSPACE.match(workspace_id) or source not in _SOURCES:
        return None
    if not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
        return None
    return workspace_id, source, external_id


class HotLinks:
    """ASGI wrapper around the litestar handler (inside the app, so lifespan and state are the
    app's), and the same answers for granian's RSGI interface (:meth:`answer_rsgi`, in front of
    the whole app). ``answered`` counts the requests it served itself."""

    def __init__(self, app: ASGIApp, lookup: LinkLookup, authenticator: Authenticator, metrics: RequestMetrics):
        self._app = app
        self._lookup = lookup
        self._auth = authenticator
        self._metrics = metrics
        self.answered = 0
        self.answered_rsgi = 0

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            started = time.perf_counter()
            answer = self._guarded(self._answer_asgi, scope)
            if answer is not None:
                status, headers, body = answer
                start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                self._count(status, started)
                if tracing.on:
                    self._span(status, started, _trace_headers(scope["headers"]))
                return
        await self._app(scope, receive, send)

    def answer_rsgi(self, scope: Any, protocol: Any) -> bool:
        """:data:`callstream.runtime.FirstAnswer` for granian's RSGI: one synchronous call, so the
        whole answer is sent or nothing is."""
        if scope.path != PATH or scope.method != "GET":
            return False
        started = time.perf_counter()
        answer = self._guarded(self._answer_rsgi, scope)
        if answer is None:
            return False
        status, headers, body = answer
        if status == 304:
            protocol.response_empty(status, headers)
        else:
            protocol.response_bytes(status, headers, body)
        self.answered_rsgi += 1
        self._count(status, started)
        if tracing.on:
            self._span(status, started, {name: scope.headers.get(name) for name in ("traceparent", "tracestate")})
        return True

    def _count(self, status: int, started: float) -> None:
        self.answered += 1
        self._metrics.defer("GET", PATH, status, time.perf_counter() - started)

    @staticmethod
    def _span(status: int, started: float, headers: dict[str, str | None]) -> None:
        """Traced: the server span of a link answered here (after the fact: the answer is one
        synchronous step), only when it continues a caller's trace. A cached link is answered in
        tens of microseconds, a span costs more than that: a new trace per read would be most of
        the linker's CPU, and one link read is not worth a trace of its own."""
        carrier = {k: v for k, v in headers.items() if v is not None and k in ("traceparent", "tracestate")}
        if "traceparent" not in carrier:
            return
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        span = tracing.tracer.start_span(
            "GET " + PATH,
            context=tracing.extract(carrier),
            kind=SpanKind.SERVER,
            start_time=time.time_ns() - elapsed_ns,
            attributes={"http.request.method": "GET", "http.route": PATH, "http.response.status_code": status},
        )
        span.end()

    @staticmethod
    def _guarded(answer: Callable[[Any], _T | None], scope: Any) -> _T | None:
        try:
            return answer(scope)
        except Exception as exc:  # a fault here must never cost the request: the route answers
            log.warning("hot link answer failed, using the full path", error=type(exc).__name__, exc_info=exc)
            return None

    def _answer_asgi(self, scope: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        authorization: bytes | None = None
        if_none_match: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value
            elif name == b"host" and not is_valid_host(value):
                return None  # litestar's router answers 400
        if authorization is None:
            return None
        found = self._found(scope["query_string"].decode("latin-1"), authorization.decode("latin-1"), if_none_match)
        if found is None:
            return None
        status, rendered = found
        rid = (b"x-request-id", request_id(scope["headers"]).encode("latin-1", "replace"))
        if status == 304:
            return 304, [_CACHE_CONTROL, (b"etag", rendered.etag), _VARY, rid], b""
        body = rendered.body
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            _CACHE_CONTROL,
            (b"etag", rendered.etag),
            _VARY,
            rid,
        ]
        return 200, headers, body

    def _answer_rsgi(self, scope: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
        headers = scope.headers
        authorization = headers.get_all("authorization")
        if len(authorization) != 1:
            return None
        for host in headers.get_all("host"):
            if not is_valid_host(host.encode("latin-1")):
                return None  # litestar's router answers 400
        if_none_match = headers.get("if-none-match")
        found = self._found(
            scope.query_string,
            authorization[0],
            None if if_none_match is None else if_none_match.encode("latin-1"),
        )
        if found is None:
            return None
        status, rendered = found
        rid = request_id(_named(headers, "x-request-id") + _named(headers, "traceparent"))
        etag = rendered.etag.decode("ascii")
        if status == 304:  # granian adds no content-length to an empty answer; litestar sends none
            return 304, [_CACHE_CONTROL_TEXT, ("etag", etag), _VARY_TEXT, ("x-request-id", rid)], b""
        headers_out = [_JSON_TEXT, _CACHE_CONTROL_TEXT, ("etag", etag), _VARY_TEXT, ("x-request-id", rid)]
        return 200, headers_out, rendered.body  # granian adds content-length

    def _found(self, query: str, authorization: str, if_none_match: bytes | None) -> tuple[int, RenderedLink] | None:
        """The status and rendered link of a request the cache alone can answer, else ``None``."""
        ident = link_identity(query)
        if ident is None:
            return None
        access = self._auth.known(authorization)
        if access is None or not access.covers(ident[0]):
            return None
        rendered = self._lookup.cached_answer(ident)
        if rendered is None:
            return None
        if if_none_match is not None and etag_matches(if_none_match, rendered.etag):
            return 304, rendered
        return 200, rendered


def _trace_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str | None]:
    return {k.decode(): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}


def _named(headers: Any, name: str) -> list[tuple[bytes, bytes]]:
    """Every value of one RSGI header as ASGI pairs, so :func:`request_id` applies its own rules
    (first non-empty ``x-request-id``, last ``traceparent``); nothing to build when it is absent."""
    if name not in headers:
        return []
    key = name.encode()
    return [(key, value.encode("latin-1")) for value in headers.get_all(name)]
