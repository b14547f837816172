"""The adapter's rules where an ASGI app misbehaves or listens, on a stand-in for granian's RSGI
protocol object (the real one only exists inside granian's workers; the e2e test serves a real
app both ways)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from callstream.runtime import AsgiOverRsgi


@dataclass
class Headers:
    pairs: list[tuple[str, str]]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.pairs if k == name), default)


@dataclass
class Scope:
    path: str = "/x"
    method: str = "POST"
    query_string: str = "a=1"
    http_version: str = "1.1"
    scheme: str = "http"
    server: str = "127.0.0.1:8000"
    client: str = "[::1]:5123"
    headers: Headers = field(default_factory=lambda: Headers([("host", "h"), ("x-a", "1")]))


class Stream:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.chunks.append(data)


class Protocol:
    def __init__(self, body: list[bytes]) -> None:
        self.body = body
        self.answers: list[tuple[Any, ...]] = []
        self.stream: Stream | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in self.body:
                yield chunk

        return chunks()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append(("bytes", status, headers, body))

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.answers.append(("empty", status, headers))

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Stream:
        self.answers.append(("stream", status, headers))
        self.stream = Stream()
        return self.stream


def serve(
    app: Any, body: list[bytes] | None = None, state: dict[str, Any] | None = None, scope: Scope | None = None
) -> Protocol:
    protocol = Protocol(body or [])
    front = AsgiOverRsgi(app)
    front.state = state or {}
    asyncio.run(front.__rsgi__(scope or Scope(), protocol))
    return protocol


def test_the_scope_is_what_an_asgi_server_gives() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        scope["state"]["mine"] = True  # a request's copy; the lifespan's state stays as it was
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    state = {"pool": "p"}
    protocol = serve(app, state=state)
    assert protocol.answers == [("bytes", 204, [], b"")]
    assert seen["client"] == ("::1", 5123)
    assert seen["server"] == ("127.0.0.1", 8000)
    assert seen["query_string"] == b"a=1"
    assert seen["headers"] == [(b"host", b"h"), (b"x-a", b"1")]
    assert (seen["type"], seen["method"], seen["path"], seen["raw_path"]) == ("http", "POST", "/x", b"/x")
    assert seen["state"] == {"pool": "p", "mine": True}
    assert state == {"pool": "p"}


def test_the_body_arrives_in_chunks_then_ends_then_disconnects_once_answered() -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not messages or messages[-1].get("more_body"):
            messages.append(await receive())
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        assert not listener.done()  # nothing is answered yet: no disconnect
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        messages.append(await listener)
        messages.append(await receive())

    protocol = serve(app, body=[b"12", b"34"])
    assert [m.get("body") for m in messages[:3]] == [b"12", b"34", b""]
    assert [m["type"] for m in messages[3:]] == ["http.disconnect", "http.disconnect"]
    assert protocol.answers == [("stream", 200, [("content-type", "text/plain")])]
    assert protocol.stream is not None
    assert protocol.stream.chunks == [b"a", b"b"]


def test_an_app_that_fails_before_answering_gets_a_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    assert serve(app).answers == [("empty", 500, [])]


def test_an_app_that_fails_between_start_and_body_gets_a_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom before the body")

    assert serve(app).answers == [("empty", 500, [])]


def test_an_app_that_never_answers_gets_a_500() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def headers_only(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    assert serve(silent).answers == [("empty", 500, [])]
    assert serve(headers_only).answers == [("empty", 500, [])]


def test_a_failure_after_the_answer_changes_nothing_sent() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        raise RuntimeError("after the answer")

    assert serve(app).answers == [("bytes", 201, [], b"ok")]


def test_a_listener_that_gives_up_does_not_spoil_the_next_one() -> None:
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        for _ in range(2):
            try:
                await asyncio.wait_for(receive(), 0.01)
            except TimeoutError:
                heard.append("timeout")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        heard.append((await receive())["type"])

    assert serve(app).answers == [("bytes", 200, [], b"ok")]
    assert heard == ["timeout", "timeout", "http.disconnect"]


def test_a_body_short_of_its_declared_length_is_a_client_gone() -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not messages or (messages[-1]["type"] == "http.request" and messages[-1]["more_body"]):
            messages.append(await receive())

    declared = Scope(headers=Headers([("content-length", "10")]))
    serve(app, body=[b"1234", b""], scope=declared)
    assert [m["type"] for m in messages] == ["http.request", "http.request", "http.disconnect"]
    whole = Scope(headers=Headers([("content-length", "4")]))
    messages.clear()
    serve(app, body=[b"1234", b""], scope=whole)
    assert [m["type"] for m in messages] == ["http.request", "http.request", "http.request"]
    assert messages[-1]["more_body"] is False


def test_header_values_go_out_as_utf8_or_not_at_all() -> None:
    async def app_with(value: bytes) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-v", value)]})
            await send({"type": "http.response.body", "body": b""})

        return app

    utf8 = serve(asyncio.run(app_with("café".encode())))
    assert utf8.answers == [("bytes", 200, [("x-v", "café")], b"")]
    latin1 = serve(asyncio.run(app_with(b"caf\xe9")))
    assert latin1.answers == [("empty", 500, [])]  # never a changed value


def test_http_1_0_is_named_as_asgi_names_it() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    serve(app, scope=Scope(http_version="1"))
    assert seen["http_version"] == "1.0"


def test_a_client_gone_is_recognised_however_the_app_wrapped_it() -> None:
    from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]

    from callstream.runtime._rsgi import _client_gone

    closed = ProtocolClosed("gone")
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = closed
    assert _client_gone(wrapped)
    looped = RuntimeError("a context that points back")
    looped.__context__ = wrapped
    wrapped.__context__ = looped
    assert _client_gone(looped)
    assert _client_gone(ExceptionGroup("stream", [ValueError("x"), closed]))
    assert not _client_gone(RuntimeError("something else"))
