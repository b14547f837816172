"""Slow and greedy clients against a served process, on each server (uvicorn, granian's ASGI
interface, and :class:`AsgiOverRsgi` on granian): a connection that sends nothing, or half its
headers, is closed within the header timeout; a body that stops arriving is given up within the
body timeout; connections past the cap are not served until one closes (issue #20, item 3).
The timeouts here are short, set as a deployment would set them (``HttpLimits``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callstream.devstack import free_port

APP = """
import sys
from litestar import Litestar, Request, get, post
from callstream.runtime import serve_asgi
from callstream.runtime._limits import HttpLimits

@get("/ping", sync_to_thread=False)
def ping() -> dict[str, str]:
    return {"status": "ok"}

@post("/echo", status_code=200)
async def echo(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}

app = Litestar([ping, echo])
server = sys.argv[2]
if server == "granian-rsgi":
    from callstream.runtime import AsgiOverRsgi
    app, server = AsgiOverRsgi(app, first=lambda scope, protocol: False), "granian"
limits = HttpLimits(float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
serve_asgi(app, "127.0.0.1", int(sys.argv[1]), server=server, shutdown_seconds=2, limits=limits)
"""

SERVERS = ["granian", "granian-rsgi", "uvicorn"]
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 4


def _serve(tmp_path: Path, server: str, header: float, body: float, connections: int) -> Iterator[int]:
    port = free_port()
    script = tmp_path / "app.py"
    script.write_text(APP)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), server, str(header), str(body), str(connections)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    yield from _serve(tmp_path, request.param, HEADER_TIMEOUT, BODY_TIMEOUT, 100)


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (what it sends before, e.g. a 408, is read and
    dropped); fails if it is still open after ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        waited = _closed_after(sock, HEADER_TIMEOUT + 4)
    assert waited >= HEADER_TIMEOUT * 0.5


def test_half_sent_headers_are_closed_within_the_header_timeout(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        _closed_after(sock, HEADER_TIMEOUT + 4)


def test_a_body_that_stops_arriving_is_given_up_within_the_body_timeout(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        )
        _closed_after(sock, BODY_TIMEOUT + 5)
    # and the server still serves everyone else
    assert httpx.get(f"http://127.0.0.1:{served}/ping", timeout=5).status_code == 200


def test_a_whole_body_and_a_kept_alive_connection_are_served(served: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served}", timeout=5) as client:
        for _ in range(3):
            r = client.post("/echo", content=b"y" * 200_000)
            assert r.json() == {"size": 200_000}


@pytest.mark.parametrize("server", SERVERS)
def test_connections_past_the_cap_are_not_served_until_one_closes(tmp_path: Path, server: str) -> None:
    for port in _serve(tmp_path, server, 30.0, 30.0, MAX_CONNECTIONS):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
        time.sleep(0.3)
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1.5)
            served_past_cap = r.status_code == 200
        except httpx.TimeoutException:
            served_past_cap = False  # granian: waits in the listen backlog
        assert not served_past_cap  # uvicorn answers 503
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TimeoutException:
                pass
            assert time.monotonic() < deadline, "not served after the held connections closed"
