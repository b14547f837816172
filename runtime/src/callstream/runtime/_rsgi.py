"""An ASGI app served over granian's RSGI interface, with a synchronous first answer in front.

Why: on granian, a request through the ASGI interface costs the app's thread a scope dict, a copy
of the lifespan state, a receive and two sends; through RSGI, a lazy scope and one
``response_bytes`` call. For an answer that is a few dictionary reads (the linker's cached links),
four alternating 10 s runs gave 16.1-18.4k req/s over RSGI against 12.3-15.6k over ASGI.
Everything the first answer declines goes to the ASGI app through the adapter below, which gives
it what granian's own ASGI interface would, except where RSGI cannot:

- ``raw_path`` is re-quoted from the decoded path (RSGI keeps no raw path), so ``%2F`` reads as
  ``/``. litestar routes on ``path`` and reads ``raw_path`` only for mounted apps.
- header values that are not visible ASCII never reach the app (granian drops them for RSGI).
- a client that goes away mid-answer is noticed when a send fails; ``receive`` says
  ``http.disconnect`` once the answer is whole, a send has failed, or the body fell short of its
  ``content-length``.
- an app that fails mid-stream leaves a properly ended chunked body (RSGI cannot abort one).
- response header values must be UTF-8 (granian writes text; litestar's are ASCII).
- a body must arrive within ``body_timeout`` of its first read (granian has no body read timeout
  of its own): past it the client is answered 408 and the app's ``receive`` says
  ``http.disconnect``; what the app sends after that is dropped.

No library does this: granian converts ASGI to RSGI inside its Rust workers only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]  # re-exported from _granian, unlisted

from ._logging import get_logger

log = get_logger(__name__)

FirstAnswer = Callable[[Any, Any], bool]
"""``(rsgi_scope, rsgi_protocol) -> answered``: must answer through the protocol and return
``True``, or touch nothing and return ``False``. Synchronous, so it can never leave half an answer."""

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_HTTP_VERSIONS = {"1": "1.0"}  # granian says "1" for HTTP/1.0
_PATH_SAFE = "/:@!$&'()*+,;=~"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class AsgiOverRsgi:
    """``__rsgi__`` for granian: ``first`` answers what it can, ``app`` (ASGI) the rest.
    ``state`` is the lifespan state: each request gets a shallow copy, as ASGI servers do."""

    def __init__(self, app: Any, first: FirstAnswer | None = None, body_timeout: float | None = None) -> None:
        self.app = app
        self.first = first
        self.state: dict[str, Any] = {}
        self.body_timeout = body_timeout  # serve_http sets it from the settings

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if self.first is not None and self.first(scope, protocol):
            return
        await _Exchange(scope, protocol, self.body_timeout).run(self.app, self.state)


class _Exchange:
    """One request handed to an ASGI app: its receive and send on top of an RSGI protocol."""

    __slots__ = (
        "_body",
        "_deadline",
        "_drained",
        "_finished",
        "_headers",
        "_protocol",
        "_received",
        "_scope",
        "_status",
        "_stream",
        "_timed_out",
        "_timeout",
        "done",
    )

    def __init__(self, scope: Any, protocol: Any, body_timeout: float | None = None) -> None:
        self._scope = scope
        self._timeout = body_timeout
        self._deadline: float | None = None
        self._timed_out = False
        self._protocol = protocol
        self._body: AsyncIterator[bytes] | None = None
        self._drained = False
        self._status: int | None = None
        self._headers: list[tuple[str, str]] = []
        self._stream: Any = None
        self._finished = asyncio.Event()  # an Event: a waiter cancelled never spoils the next wait
        self._received = 0
        self.done = False

    def asgi_scope(self, state: dict[str, Any]) -> dict[str, Any]:
        scope = self._scope
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": _HTTP_VERSIONS.get(scope.http_version, scope.http_version),
            "server": _host_port(scope.server),
            "client": _host_port(scope.client),
            "scheme": scope.scheme,
            "method": scope.method,
            "root_path": "",
            "path": scope.path,
            "raw_path": quote(scope.path, safe=_PATH_SAFE).encode("ascii"),
            "query_string": scope.query_string.encode("latin-1"),
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()],
            "state": state.copy(),
        }

    async def run(self, app: Any, state: dict[str, Any]) -> None:
        try:
            await app(self.asgi_scope(state), self.receive, self.send)
        except Exception as exc:
            if _client_gone(exc):
                log.info("the client went away before the answer was sent", path=self._scope.path)
                return
            log.error("the ASGI app failed", path=self._scope.path, error=type(exc).__name__, exc_info=exc)
        else:
            if self._unanswered():
                log.error("the ASGI app returned without a whole answer", path=self._scope.path)
        if self._unanswered():
            self._protocol.response_empty(500, [])

    def _unanswered(self) -> bool:
        """Nothing has reached the client yet: a start without its body is not an answer."""
        return not self.done and self._stream is None

    async def receive(self) -> dict[str, Any]:
        if not self._drained:
            if self._body is None:
                self._body = aiter(self._protocol)
                if self._timeout is not None:
                    self._deadline = asyncio.get_running_loop().time() + self._timeout
            try:
                if self._deadline is None:
                    chunk = await anext(self._body)
                else:
                    left = self._deadline - asyncio.get_running_loop().time()
                    chunk = await asyncio.wait_for(anext(self._body), max(0.0, left))
            except TimeoutError:
                self._drained = self._timed_out = True
                log.info("a request body was not sent in time", path=self._scope.path, seconds=self._timeout)
                self._protocol.response_empty(408, [("connection", "close")])
                self._finish()
                return {"type": "http.disconnect"}
            except StopAsyncIteration:
                self._drained = True
                if self._cut_short():
                    self._finish()
                    return {"type": "http.disconnect"}
                return {"type": "http.request", "body": b"", "more_body": False}
            self._received += len(chunk)
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}
        # ASGI: after the whole answer, receive() says http.disconnect (litestar's streams wait
        # for it). granian's client_disconnect() cannot be cancelled and, after a whole answer,
        # never resolves, so each wait on it would be a task kept forever: a gone client shows
        # up as a failed send instead, and that ends this wait too.
        await self._finished.wait()
        return {"type": "http.disconnect"}

    def _cut_short(self) -> bool:
        """granian ends a body whose connection broke as if it were whole: a declared length not
        reached is a client gone, as granian's ASGI interface and uvicorn report it."""
        declared = self._scope.headers.get("content-length")
        return declared is not None and declared.isdigit() and int(declared) > self._received

    async def send(self, message: dict[str, Any]) -> None:
        if self._timed_out:
            return  # answered 408 already
        kind = message["type"]
        if kind == "http.response.start":
            if self._status is not None:
                raise RuntimeError("http.response.start sent twice")
            # granian writes header text as UTF-8: only bytes that are UTF-8 already go out unchanged
            # (a ValueError here lets the app's error handling answer 500 instead).
            headers = [(n.decode("latin-1"), v.decode("utf-8")) for n, v in message.get("headers", ())]
            self._status, self._headers = message["status"], headers
        elif kind == "http.response.body":
            if self._status is None or self.done:
                raise RuntimeError("http.response.body before http.response.start, or after the last body")
            body, more = message.get("body", b""), message.get("more_body", False)
            if self._stream is None and not more:
                self._protocol.response_bytes(self._status, self._headers, body)
                self._finish()
                return
            if self._stream is None:
                self._stream = self._protocol.response_stream(self._status, self._headers)
            try:
                if body:
                    await self._stream.send_bytes(body)
            except ProtocolClosed:
                self._finish()
                raise
            if not more:
                self._finish()
        else:
            raise RuntimeError(f"ASGI message {kind!r} is not supported over RSGI")

    def _finish(self) -> None:
        self.done = True
        self._finished.set()


def _client_gone(exc: BaseException) -> bool:
    """``ProtocolClosed`` from a send, however the app wrapped it (litestar re-raises it as its own
    exception, or inside an ExceptionGroup from a stream's task group)."""
    pending: list[BaseException] = [exc]
    visited: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, ProtocolClosed):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False
