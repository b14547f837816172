"""An ASGI app served over granian's RSGI (:class:`AsgiOverRsgi`) answers exactly as the same app
on granian's own ASGI interface: one litestar app, served both ways, asked the same things; and a
first answer in front serves what it takes, whole, leaving the rest to the app."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from callstream.devstack import free_port

APP = """
import hashlib, sys
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream
from callstream.runtime import AsgiOverRsgi, serve_asgi

@get("/echo/{rest:path}", sync_to_thread=False)
def echo(request: Request, rest: str) -> dict:
    return {
        "path": request.url.path, "rest": rest, "query": sorted(request.query_params.multi_items()),
        "method": request.method, "scheme": request.url.scheme, "host": request.url.netloc,
        "x_a": request.headers.getall("x-a", []), "client": request.client.host if request.client else None,
        "http_version": request.scope["http_version"],
    }

@post("/upload", status_code=200)
async def upload(request: Request) -> dict:
    body = await request.body()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

@get("/stream", sync_to_thread=False)
def stream() -> Stream:
    return Stream(iter([b"one,", b"two,", b"", b"three"]), media_type="text/plain")

@get("/teapot", sync_to_thread=False)
def teapot() -> Response:
    response = Response({"tea": True}, status_code=418, headers={"x-b": "1"})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response

@get("/empty", status_code=204, sync_to_thread=False)
def empty() -> None:
    return None

@get("/boom", sync_to_thread=False)
def boom() -> dict:
    raise RuntimeError("on purpose")

def first(scope, protocol):
    if scope.path != "/first":
        return False
    protocol.response_bytes(200, [("content-type", "text/plain")], b"first")
    return True

app = Litestar([echo, upload, stream, teapot, empty, boom], request_max_body_size=100_000)
server = sys.argv[2]
if server == "rsgi":
    app = AsgiOverRsgi(app, first=first)
serve_asgi(app, "127.0.0.1", int(sys.argv[1]), server="granian")
"""

_VARYING = ("date", "connection")
BIG = bytes(range(256)) * 300  # 76,800 bytes: more than one read, under the app's limit


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    script = tmp_path_factory.mktemp("rsgi") / "app.py"
    script.write_text(APP)
    procs, urls = [], {}
    try:
        for kind in ("asgi", "rsgi"):
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, str(script), str(port), kind]))
            urls[kind] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            _wait(url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/echo/ready", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"{url} never answered")


def _comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, less what differs by nature: the date, each server's port, and
    ``connection: close``, which granian's HTTP layer adds on either interface when an answer
    leaves part of the request body unread at that moment (a race with the upload)."""
    headers = sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in _VARYING)
    body = response.content.replace(response.url.netloc, b"<server>")
    return response.status_code, body, [(k, "<n>" if k == "content-length" else v) for k, v in headers]


CASES: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/echo/a/b", {"params": [("x", "1"), ("x", "2"), ("y", "a b"), ("z", "é")]}),
    ("GET", "/echo/with%20space", {}),
    ("GET", "/echo/h", {"headers": [("x-a", "one"), ("x-a", "two")]}),
    ("POST", "/upload", {"content": BIG}),
    ("POST", "/upload", {"content": b""}),
    ("POST", "/upload", {"content": BIG * 2}),  # over request_max_body_size: 413
    ("GET", "/stream", {}),
    ("GET", "/teapot", {}),
    ("GET", "/empty", {}),
    ("GET", "/boom", {}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/teapot", {}),
    ("HEAD", "/echo/head", {}),
]


@pytest.mark.parametrize(("method", "path", "options"), CASES, ids=[f"{m} {p}" for m, p, _ in CASES])
def test_the_adapter_answers_as_granians_asgi_does(
    servers: dict[str, str], method: str, path: str, options: dict[str, object]
) -> None:
    asgi = httpx.request(method, servers["asgi"] + path, timeout=10, **options)  # type: ignore[arg-type]
    rsgi = httpx.request(method, servers["rsgi"] + path, timeout=10, **options)  # type: ignore[arg-type]
    assert _comparable(rsgi) == _comparable(asgi)
    for answer in (asgi, rsgi):  # what _comparable masks: each length is its own body's
        if "content-length" in answer.headers and method != "HEAD":
            assert int(answer.headers["content-length"]) == len(answer.content)


def test_request_bodies_arrive_whole(servers: dict[str, str]) -> None:
    answer = httpx.post(servers["rsgi"] + "/upload", content=BIG, timeout=10)
    assert answer.json() == {"length": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest()}
    chunked = httpx.post(servers["rsgi"] + "/upload", content=iter([BIG[:1000], BIG[1000:]]), timeout=10)
    assert chunked.json() == answer.json()


def test_a_refused_upload_leaves_the_connection_usable(servers: dict[str, str]) -> None:
    with httpx.Client(base_url=servers["rsgi"], timeout=10) as client:
        for _ in range(3):
            assert client.post("/upload", content=BIG * 2).status_code == 413
            assert client.get("/echo/after").json()["rest"] == "/after"


def test_the_first_answer_serves_its_own_and_only_those(servers: dict[str, str]) -> None:
    first = httpx.get(servers["rsgi"] + "/first", timeout=10)
    assert (first.status_code, first.text) == (200, "first")
    assert httpx.get(servers["asgi"] + "/first", timeout=10).status_code == 404  # the app has no such route


def test_what_rsgi_cannot_carry(servers: dict[str, str]) -> None:
    """The two documented differences: no raw path (``%2F`` arrives as ``/``), and header values
    that are not visible ASCII never reach the app."""
    slash = {kind: httpx.get(url + "/echo/a%2Fb", timeout=10).json()["path"] for kind, url in servers.items()}
    assert slash == {"asgi": "/echo/a/b", "rsgi": "/echo/a/b"}
    latin = [(b"x-a", b"caf\xe9")]
    heard = {kind: httpx.get(url + "/echo/h", headers=latin, timeout=10).json()["x_a"] for kind, url in servers.items()}
    assert heard == {"asgi": ["caf\xe9"], "rsgi": []}


def test_a_streamed_answer_is_sent_in_order(servers: dict[str, str]) -> None:
    with httpx.stream("GET", servers["rsgi"] + "/stream", timeout=10) as response:
        assert b"".join(response.iter_raw()) == b"one,two,three"
        assert response.headers.get("transfer-encoding") == "chunked"
