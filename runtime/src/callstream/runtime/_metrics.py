"""Per-request observation as one plain ASGI middleware: a request id bound to every log line and
echoed in ``x-request-id``, and Prometheus count and latency by method, route template and status.

One layer instead of litestar's PrometheusMiddleware plus a request-id middleware: measured on a
hello-world GET, the two cost about as much as the route itself (label dicts, exemplars, a response
wrapper and a uuid per request); this keeps the same series with one label lookup per request.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.registry import Collector


class _FlushDeferred(Collector):
    """Registered before the series below, so every collection of the default registry (a
    scrape, ``get_sample_value``) first adds what :meth:`RequestMetrics.defer` held back.
    Another registry (prometheus_client's multiprocess mode, ``restricted_registry``) would not
    flush them: callstream uses neither."""

    def collect(self) -> list[Any]:
        with _DEFERRING_LOCK:
            deferring = list(_DEFERRING)
        for metrics in deferring:
            metrics.flush()
        return []


# Held for good, not weakly: a tally must not vanish with an app dropped before the next scrape.
_DEFERRING: list[RequestMetrics] = []
_DEFERRING_LOCK = threading.Lock()
REGISTRY.register(_FlushDeferred())
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUESTS = Counter("callstream_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "callstream_http_request_duration_seconds",
    "Time from request to the end of the response",
    ["service", "method", "route"],
    buckets=BUCKETS,
)
_UNMATCHED = "unmatched"  # litestar runs app middleware only on matched routes; kept as a guard
_SKIP = ("/health", "/metrics")
_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}-{int(time.time()):x}-"


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The id a request is known by in logs and in ``x-request-id``: the caller's ``x-request-id``, else the trace id of ``traceparent``, else a new one."""
    trace = b""
    for name, value in headers:
        if name == b"x-request-id" and value:
            return value[:128].decode("latin-1")
        if name == b"traceparent":
            trace = value
    if trace:
        parts = trace.split(b"-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return parts[1].decode("latin-1")
    return _PREFIX + format(next(_ids), "x")  # unique per process start; no uuid per request


class RequestMetrics:
    """The count and latency series of one service, with each label set resolved once (a
    ``labels()`` call per request costs more than the observation itself)."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._deferred: dict[tuple[str, str, int], list[float]] = {}
        with _DEFERRING_LOCK:
            _DEFERRING.append(self)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        counter, histogram = self._pair((method, route, status))
        counter.inc()
        histogram.observe(seconds)

    def defer(self, method: str, route: str, status: int, seconds: float) -> None:
        """:meth:`record`, added to the series when they are next collected rather than now: a
        tally under one lock instead of two prometheus children's ~10 calls and three locks, for
        answers given tens of thousands of times a second (the linker's cached links)."""
        key = (method, route, status)
        with self._lock:
            tally = self._deferred.get(key)
            if tally is None:
                tally = self._deferred[key] = [0.0] * (len(BUCKETS) + 2)  # sum, then each bucket and +Inf
            tally[0] += seconds
            tally[1 + bisect_left(BUCKETS, seconds)] += 1  # prometheus' rule: the first bound >= it

    def flush(self) -> None:
        """Add the deferred tallies to the series. The lock is held until they are added, so a
        second reader at the same moment waits for them rather than reading a count short.
        prometheus_client cannot add many observations at once, so the histogram child's
        ``_sum`` and ``_buckets`` are used directly; ``test_deferred_observations_equal_recorded_ones``
        holds that to what ``observe`` does."""
        with self._lock:
            for key, tally in self._deferred.items():
                counter, histogram = self._pair(key)
                counter.inc(sum(tally[1:]))
                histogram._sum.inc(tally[0])
                for bucket, count in zip(histogram._buckets, tally[1:], strict=True):
                    if count:
                        bucket.inc(count)
            self._deferred.clear()

    def _pair(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        pair = self._children.get(key)
        if pair is None:
            method, route, status = key
            pair = self._children[key] = (
                REQUESTS.labels(self._service, method, route, str(status)),
                LATENCY.labels(self._service, method, route),
            )
        return pair


def observe_middleware_factory(service: str) -> Any:
    def middleware(app: ASGIApp) -> ASGIApp:
        metrics = RequestMetrics(service)

        async def observe(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            rid = request_id(scope["headers"])
            raw = rid.encode("latin-1", "replace")
            status = 500

            async def send_observed(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw)]
                await send(message)

            started = time.perf_counter()
            tokens = structlog.contextvars.bind_contextvars(request_id=rid)
            try:
                await app(scope, receive, send_observed)
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
                if not scope["path"].startswith(_SKIP):
                    metrics.record(
                        scope["method"], scope.get("path_template") or _UNMATCHED, status, time.perf_counter() - started
                    )

        return observe

    return middleware
