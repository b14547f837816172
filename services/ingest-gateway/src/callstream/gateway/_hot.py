"""Fathom webhooks answered in front of the framework.

At 500 webhooks/s the whole pipeline shares two cores, and a third of the gateway's CPU per webhook
went to litestar's routing, parameter parsing, dependency resolution, body reading and response
rendering around a handler that verifies, encodes and publishes (``py-spy``, ``bench/e2e_latency``).
This layer runs the route's own steps (:class:`FathomWebhooks`) on the ASGI messages directly and
sends what the route sends, errors included (``test_webhooks.py`` runs every case both ways and
compares). Other methods and paths, and a malformed ``Host``, go to the app untouched, and so does a
request whose handling fails here in an unexpected way before anything was sent (with its body
replayed).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import structlog
from litestar._asgi.utils import is_valid_host
from litestar.types import ASGIApp, Receive, ReceiveMessage, Send

from callstream.runtime import ApiError, RequestMetrics, api_error_answer, get_logger, request_id, tracing
from callstream.runtime._tracing import mark_error

from ._webhooks import WEBHOOK_PATH, FathomWebhooks, read_headers, webhook_path, webhook_span

log = get_logger(__name__)

PREFIX = webhook_path("")
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class _Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class HotWebhooks:
    """ASGI wrapper around the litestar handler (inside the app, so lifespan and state are the
    app's). ``answered`` counts the requests it answered itself; ``enabled`` off hands everything to
    the route (tests compare the two)."""

    def __init__(self, app: ASGIApp, webhooks: FathomWebhooks, metrics: RequestMetrics) -> None:
        self._app = app
        self._webhooks = webhooks
        self._metrics = metrics
        self._route = WEBHOOK_PATH.replace(":str", "")
        self.enabled = True
        self.answered = 0

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" and scope["method"] == "POST" else ""
        integration_id = path[len(PREFIX) :]
        if (
            not self.enabled
            or not path.startswith(PREFIX)
            or not integration_id
            or "/" in integration_id
            or not _host_is_valid(scope["headers"])
        ):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        received: list[ReceiveMessage] = []
        try:
            status, headers, body = await self._answer(scope, integration_id, receive, received)
        except _Disconnected:
            return
        except Exception as exc:  # a fault here must never cost the request: the route answers
            log.warning("hot webhook answer failed, using the full path", error=type(exc).__name__, exc_info=exc)
            await self._app(scope, _replay(received, receive), send)
            return
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
        headers.append((b"x-request-id", rid.encode("latin-1", "replace")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self.answered += 1
        self._metrics.record("POST", self._route, status, time.perf_counter() - started)

    async def _answer(
        self, scope: Any, integration_id: str, receive: Receive, received: list[ReceiveMessage]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = read_headers(scope["headers"])
        if not tracing.on:
            return await self._steps(integration_id, headers, receive, received)
        with webhook_span(integration_id, headers) as span:
            answer = await self._steps(integration_id, headers, receive, received)
            span.set_attribute("http.response.status_code", answer[0])
            if answer[0] >= 500:
                mark_error(span, f"HTTP {answer[0]}")
            return answer

    async def _steps(
        self, integration_id: str, headers: dict[str, str], receive: Receive, received: list[ReceiveMessage]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        webhooks = self._webhooks
        try:
            target = webhooks.admit(integration_id, headers)
            body = await _read_body(receive, webhooks.max_body, received)
            if body is None:
                raise webhooks.body_too_large()
            accepted = await webhooks.publish(webhooks.raw_call(target, integration_id, headers, body))
        except ApiError as exc:
            return api_error_answer(exc)
        answer = _encode(accepted)
        return 202, [_JSON, (b"content-length", str(len(answer)).encode())], answer


def _host_is_valid(headers: list[tuple[bytes, bytes]]) -> bool:
    """Litestar's router answers 400 to a malformed ``Host``: such a request is left to it."""
    return all(is_valid_host(value) for name, value in headers if name == b"host")


async def _read_body(receive: Receive, limit: int, received: list[ReceiveMessage]) -> bytes | None:
    """The whole body, or ``None`` once it passes ``limit`` (the rest is not read).

    Never a wait for ever: a body that stops arriving ends ``receive`` with ``http.disconnect``
    (:class:`_Disconnected`) at the server's body timeout (``CALLSTREAM_HTTP_BODY_TIMEOUT_SECONDS``:
    uvicorn's protocol closes the connection, on granian ``BodyDeadline`` ends the read; see
    ``runtime._limits``), so this path pays no timer of its own. A body in one message (the usual
    webhook) is taken as it is, no copy; one in several is joined and its chunks let go, and
    ``received`` keeps the joined body alone for a replay: a large body is held twice at most
    (the body and its encoded event), never three times (body, chunks and event)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    received.append(message)
    first: bytes = message.get("body", b"")  # type: ignore[assignment]
    if len(first) > limit:
        return None
    if not message.get("more_body", False):
        return first
    chunks = [first]
    size = len(first)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        received.append(message)
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    received[:] = [{"type": "http.request", "body": body, "more_body": False}]
    return body


def _replay(received: list[ReceiveMessage], receive: Receive) -> Receive:
    """``receive`` again from the start: the messages already read, then the rest."""
    pending = list(received)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
