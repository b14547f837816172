"""What one slow or greedy client may hold of an HTTP server: time to send its headers, time to
send its body, and a share of a capped number of connections.

Neither server bounds all of it by itself: uvicorn has no header or body read timeout at all (a
connection that sends nothing is kept for ever), granian bounds the headers (``header_read_timeout``)
but not the body. So uvicorn gets a protocol that closes a connection whose headers or body are
late, and apps on granian get a body deadline in front of ``receive`` (:class:`BodyDeadline`, and
the RSGI adapter's own, see ``_rsgi``). The connection cap is each server's own: uvicorn's
``limit_concurrency`` (503 beyond it), granian's ``backpressure`` (connections wait in the backlog).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DEFAULT_HTTP_BODY_TIMEOUT_SECONDS",
    "DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS",
    "DEFAULT_HTTP_MAX_CONNECTIONS",
    "BodyDeadline",
    "HttpLimits",
    "uvicorn_protocol",
]

DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS = 30.0
# A body of the gateway's 16 MiB limit needs ~4.5 Mbit/s to arrive within a minute.
DEFAULT_HTTP_BODY_TIMEOUT_SECONDS = 60.0
# Per process. A connection costs a few kB in either server; this bounds memory and file
# descriptors well inside a pod's limits while leaving far more than the 64-connection benchmarks.
DEFAULT_HTTP_MAX_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_seconds: float = DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_HTTP_BODY_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS


_IDLE, _HEADERS, _BODY = 0, 1, 2


def uvicorn_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection that has not sent a request's headers
    within ``header_timeout_seconds`` of its first byte (or of connecting), or its body within
    ``body_timeout_seconds`` of the headers. Time the app spends not reading (uvicorn pauses the
    socket when a body backs up) does not count against the client."""
    header_timeout = limits.header_timeout_seconds
    body_timeout = limits.body_timeout_seconds

    class Protocol(HttpToolsProtocol):
        # One timer per connection, not per request: a request only notes its phase and when it
        # began (a timer armed and cancelled per request showed in the gateway's instructions per webhook);
        # the timer, when it fires, closes a late connection or sleeps exactly until the phase
        # in progress would be late.
        _timer: asyncio.TimerHandle | None = None
        _phase = _IDLE
        _since = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._phase, self._since = _HEADERS, self.loop.time()
            self._timer = self.loop.call_later(header_timeout, self._check)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._phase != _HEADERS:  # the next request on a kept-alive connection
                self._phase, self._since = _HEADERS, self.loop.time()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._phase, self._since = _BODY, self.loop.time()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._phase = _IDLE

        def _check(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            if self._phase == _IDLE:
                left = header_timeout  # between requests: uvicorn's keep-alive timeout applies
            elif self._phase == _BODY and self.flow is not None and self.flow.read_paused:
                self._since = now  # the app is behind reading the body, not the client
                left = body_timeout
            else:
                left = self._since + (header_timeout if self._phase == _HEADERS else body_timeout) - now
                if left <= 0:
                    self.transport.close()
                    return
            self._timer = self.loop.call_later(left, self._check)

    return Protocol


class BodyDeadline:
    """ASGI: a request's body must arrive within ``seconds`` of its first read, else ``receive``
    says ``http.disconnect`` (as when the client goes away) and the connection's answer is the
    app's. For servers without a body read timeout of their own (granian)."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # e.g. ``state``, ``asgi_handler`` of a litestar app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        done = False

        async def bounded() -> Any:
            nonlocal deadline, done
            if done:
                return await receive()  # after the body: waiting for a disconnect is the app's business
            if deadline is None:
                deadline = loop.time() + self._seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                done = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        await self.app(scope, bounded, send)
