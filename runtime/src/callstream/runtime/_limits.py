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


def uvicorn_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection that has not sent a request's headers
    within ``header_timeout_seconds`` of its first byte (or of connecting), or its body within
    ``body_timeout_seconds`` of the headers. Time the app spends not reading (uvicorn pauses the
    socket when a body backs up) does not count against the client."""
    header_timeout = limits.header_timeout_seconds
    body_timeout = limits.body_timeout_seconds

    class Protocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self, seconds: float, callback: Any) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_timeout, self._late)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # the next request on a kept-alive connection
                self._arm(header_timeout, self._late)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(body_timeout, self._late_body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def _late(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def _late_body(self) -> None:
            if self.flow is not None and self.flow.read_paused:
                self._arm(body_timeout, self._late_body)  # the app is behind, not the client
                return
            self._late()

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
