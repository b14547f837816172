"""How a service process serves HTTP, on each server: in-flight requests finish on SIGTERM and the
lifespan shutdown runs (exit 0); a shutdown that cannot finish is cut off after the grace period;
a failed start-up or a port already in use is a failed process, never a quiet exit 0. Each holds
on uvicorn, on granian's ASGI interface and on its RSGI interface (:class:`AsgiOverRsgi`)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from callstream.devstack import free_port

APP = """
import asyncio, sys
from pathlib import Path
from litestar import Litestar, get
from callstream.runtime import serve_asgi

marker = Path(sys.argv[1])

@get("/slow", sync_to_thread=False)
async def slow(seconds: float) -> dict[str, str]:
    await asyncio.sleep(seconds)
    return {"status": "done"}

@get("/ping", sync_to_thread=False)
def ping() -> dict[str, str]:
    return {"status": "ok"}

async def fail_on_start() -> None:
    raise RuntimeError("start-up failed on purpose")

async def record_shutdown() -> None:
    marker.write_text("shut down")

async def slow_start() -> None:
    marker.write_text("starting")
    await asyncio.sleep(2)

hooks = {"fail": [fail_on_start], "slow": [slow_start]}.get(sys.argv[4], [])
app = Litestar([slow, ping], on_startup=hooks, on_shutdown=[record_shutdown])
server = sys.argv[3]
if server == "granian-rsgi":
    from callstream.runtime import AsgiOverRsgi
    app, server = AsgiOverRsgi(app, first=lambda scope, protocol: False), "granian"
serve_asgi(app, "127.0.0.1", int(sys.argv[2]), server=server, shutdown_seconds=float(sys.argv[5]))
"""

# granian-rsgi: an AsgiOverRsgi on granian, where the lifespan is run by serve_asgi, not granian.
SERVERS = ["granian", "granian-rsgi", "uvicorn"]
GRANIAN = ["granian", "granian-rsgi"]


def _start(tmp_path: Path, server: str, *, mode: str = "ok", grace: float = 10.0, port: int | None = None):
    port = port or free_port()
    script = tmp_path / "app.py"
    script.write_text(APP)
    marker = tmp_path / "shutdown.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), str(port), server, mode, str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, port, marker


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("the server never answered")


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_lets_requests_in_flight_finish_then_runs_shutdown(tmp_path: Path, server: str) -> None:
    proc, port, marker = _start(tmp_path, server)
    _wait_ready(proc, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as idle_keep_alive:
        assert idle_keep_alive.get("/ping").status_code == 200  # a kept-alive connection left open
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/slow?seconds=1.5", timeout=10))
        )
        request.start()
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        request.join()
        code = proc.wait(timeout=15)
        took = time.monotonic() - started
    assert len(answers) == 1
    assert answers[0].status_code == 200
    assert answers[0].json() == {"status": "done"}
    assert code == 0, proc.stdout.read().decode() if proc.stdout else ""
    assert marker.read_text() == "shut down"
    assert took < 8, took


@pytest.mark.parametrize("server", GRANIAN)
def test_granian_cuts_a_shutdown_off_after_the_grace_period(tmp_path: Path, server: str) -> None:
    proc, port, marker = _start(tmp_path, server, grace=1.0)
    marker.unlink(missing_ok=True)
    _wait_ready(proc, port)
    outcome: list[str] = []

    def slow_request() -> None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/slow?seconds=30", timeout=40)
            outcome.append("answered")
        except httpx.HTTPError:
            outcome.append("cut off")

    request = threading.Thread(target=slow_request, daemon=True)
    request.start()
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=15)
    assert time.monotonic() - started < 5
    assert code != 0
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "grace period" in output
    assert not marker.exists()  # cut off: the lifespan shutdown never ran
    request.join(timeout=10)
    assert outcome == ["cut off"]


@pytest.mark.parametrize("server", SERVERS)
def test_a_failed_start_up_is_a_failed_process(tmp_path: Path, server: str) -> None:
    proc, _, _ = _start(tmp_path, server, mode="fail")
    assert proc.wait(timeout=30) != 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_port_in_use_is_a_failed_process(tmp_path: Path, server: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        first, _, _ = _start(tmp_path, server, port=port)
        assert first.wait(timeout=30) != 0
    # granian binds with SO_REUSEPORT: a second one on a granian's port must refuse too.
    proc, port, _ = _start(tmp_path, server)
    _wait_ready(proc, port)
    try:
        second, _, _ = _start(tmp_path, server, port=port)
        assert second.wait(timeout=30) != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_sigterm_during_an_rsgi_start_up_ends_cleanly_after_it(tmp_path: Path) -> None:
    """Over RSGI the lifespan is run by serve_asgi itself, after the signal handlers are in place:
    a SIGTERM while it starts is a graceful stop (the shutdown runs, exit 0), not a kill."""
    proc, _, marker = _start(tmp_path, "granian-rsgi", mode="slow")
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the start-up never began"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=15)
    assert code == 0, proc.stdout.read().decode() if proc.stdout else ""
    assert marker.read_text() == "shut down"


def test_a_failed_rsgi_start_up_says_so(tmp_path: Path) -> None:
    proc, _, _ = _start(tmp_path, "granian-rsgi", mode="fail")
    assert proc.wait(timeout=30) == 1
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "lifespan start-up failed" in output
