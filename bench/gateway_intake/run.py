"""Benchmark: Fathom webhook intake through the real ingest-gateway vs. a minimal ceiling app.

    .venv/bin/python bench/gateway_intake/run.py [--smoke] [--duration 15] [--connections 64] [--rounds 3]

Both servers run in this invocation on the same embedded NATS JetStream (and the gateway on an
embedded PostgreSQL), are served the same way (uvicorn + uvloop + httptools, one process), and get
the same load from wrk: 20 KB signed Fathom bodies, each request with its own webhook-id (so every
request is a new event, never a duplicate). Both stay up for the whole run and are measured in
alternating rounds (gateway first, then ceiling first, ...), so a burst of noise on the shared
cores lands on both sides rather than on whichever happened to run at that moment. A second
ceiling, ``ceiling_raw_asgi``, runs the same steps as a bare ASGI app without litestar: the gateway
answers webhooks in front of litestar, so the litestar ceiling alone would flatter its ratio
(``ratio_to_raw_asgi``). A third, ``ceiling_raw_asgi_rule``, is that bare app applying the whole
payload rule the gateway applies (issue #17: every documented field of its type, not only the
meeting's id): ``ratio_to_raw_asgi_rule`` is the cost of the gateway's own machinery, and the two
bare ceilings' difference the cost of the rule itself. Prints one
JSON object: per side the median of the rounds (req/s, p50, p99, and the server's CPU time per
request), every round, the ratio of the medians (``cpu_ratio``: the ceiling's CPU per request over the
gateway's), and whether the target (ratio >= 0.9, p99 <= 100 ms) is met. ``--smoke`` is a tiny run for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats

from callstream.contracts import CALLS_RAW
from callstream.devstack._servers import EmbeddedPostgres, NatsServer, free_port, service_nats_env, wait_port
from callstream.runtime import ensure_all

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-24").decode()
ADMIN_TOKEN = "bench-admin-" + secrets.token_urlsafe(32)
TARGET = {"ratio_min": 0.9, "p99_ms_max": 100.0}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and apt-get could not install it")
    return found


def fathom_body(size: int = 20_480) -> bytes:
    """A Fathom meeting (fathom.md §3) padded with transcript lines to about ``size`` bytes."""
    lines: list[dict[str, object]] = []
    body = b""
    meeting = {
        "title": "Quillmere x Tallowbrook - pilot scoping",
        "meeting_title": "Pilot scoping",
        "recording_id": 512330871,
        "url": "https://fathom.video/calls/884120457",
        "share_url": "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH",
        "created_at": "2026-02-25T15:54:41Z",
        "recorded_by": {"name": "Marisol", "email": "marisol@quillmere-systems.com", "team": None},
        "calendar_invitees": [{"name": "K", "email": "k@tallowbrook-capital.com", "is_external": True}],
        "transcript": lines,
    }
    i = 0
    while len(body) < size:
        lines.append(
            {
                "speaker": {"display_name": f"Speaker {i % 4}"},
                "text": f"Line {i}: we agreed the pilot scope and EU data residency.",
                "timestamp": f"00:{i // 60 % 60:02d}:{i % 60:02d}",
            }
        )
        body = msgspec.json.encode(meeting)
        i += 1
    return body


def write_signatures(path: Path, body: bytes, count: int, prefix: str) -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    now = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            wid = f"msg_{prefix}{i}"
            sig = base64.b64encode(hmac.new(key, f"{wid}.{now}.".encode() + body, hashlib.sha256).digest()).decode()
            out.write(f"{wid} {now} v1,{sig}\n")


def to_ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    assert m, value
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def run_wrk(
    wrk: str, url: str, path: str, body_file: Path, signatures: Path, seconds: int, connections: int
) -> dict[str, float]:
    env = dict(os.environ, BODY_FILE=str(body_file), SIGNATURES=str(signatures), TARGET_PATH=path, WRK_THREADS="1")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(HERE / "intake.lua"), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


async def stream_messages(nats_url: str, purge: bool = False) -> int:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        if purge:
            await js.purge_stream(CALLS_RAW)
        return int((await js.stream_info(CALLS_RAW)).state.messages)
    finally:
        await nc.close()


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group of the server this script started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def measure(
    name: str,
    wrk: str,
    base: str,
    path: str,
    body_file: Path,
    work: Path,
    args: argparse.Namespace,
    nats_url: str,
    pid: int,
) -> dict[str, float]:
    warm = 1 if args.smoke else 3
    expected_rate = 4000 if args.smoke else 8000  # more signatures than requests: no id repeats
    signatures = work / f"{name}.sig"
    write_signatures(signatures, body_file.read_bytes(), expected_rate * (args.duration + warm), name)
    probe = httpx.post(
        base + path, content=body_file.read_bytes(), headers=_one_signed(body_file.read_bytes()), timeout=10
    )
    if probe.status_code != 202:
        raise RuntimeError(f"{name}: probe answered {probe.status_code}: {probe.text[:200]}")
    run_wrk(wrk, base, path, body_file, signatures, warm, args.connections)
    asyncio.run(stream_messages(nats_url, purge=True))
    write_signatures(signatures, body_file.read_bytes(), expected_rate * args.duration, name + "r")
    cpu_before = cpu_seconds(pid)
    result = run_wrk(wrk, base, path, body_file, signatures, args.duration, args.connections)
    # The server's own CPU per request: far steadier than req/s when the shared cores are noisy.
    result["cpu_us_per_request"] = round((cpu_seconds(pid) - cpu_before) / max(result["requests"], 1) * 1e6, 1)
    time.sleep(0.5)
    result["stored"] = asyncio.run(stream_messages(nats_url))
    return result


def summary(rounds: list[dict[str, Any]], side: str) -> dict[str, float]:
    """The median of each figure over the rounds; counts are summed."""
    runs: list[dict[str, float]] = [r[side] for r in rounds]
    out = {
        k: round(statistics.median(run[k] for run in runs), 2)
        for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
    }
    out.update({k: sum(run[k] for run in runs) for k in ("requests", "non_2xx", "socket_errors", "stored")})
    return out


def _one_signed(body: bytes) -> dict[str, str]:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    wid, ts = "msg_probe_" + secrets.token_hex(4), str(int(time.time()))
    sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "webhook-id": wid,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + sig,
    }


async def prepare(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await ensure_all(nc.jetstream())
    finally:
        await nc.close()


async def create_database(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create database bench")
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds with few connections (CI)")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each side")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.connections, args.rounds = 2, 8, 1
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    body = fathom_body()
    body_file = work / "body.json"
    body_file.write_bytes(body)
    pg = EmbeddedPostgres(work / "pg", port=free_port(), durable=False)
    nats_server = NatsServer(work / "js", port=free_port(), name="bench-nats")
    procs: list[subprocess.Popen[bytes]] = []
    rounds: list[dict[str, Any]] = []
    try:
        pg.start()
        nats_server.start()
        asyncio.run(create_database(pg.dsn()))
        asyncio.run(prepare(nats_server.url))
        gw_port, ceiling_port, raw_port, rule_port = free_port(), free_port(), free_port(), free_port()
        env = dict(
            os.environ,
            CALLSTREAM_DATABASE_URL=pg.dsn("bench"),
            CALLSTREAM_NATS_URL=nats_server.url,
            CALLSTREAM_GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            CALLSTREAM_SECRET_KEY="k1:" + secrets.token_urlsafe(32),
            CALLSTREAM_GATEWAY_PORT=str(gw_port),
            CALLSTREAM_LOG_FORMAT="json",
            CALLSTREAM_LOG_LEVEL="info",
        )
        env = service_nats_env("gateway", env)  # its own identity and permissions, as deployed
        subprocess.run([str(BIN / "callstream-gateway"), "migrate"], env=env, check=True, capture_output=True)
        command = [str(BIN / "callstream-gateway"), "serve"]
        if os.environ.get("BENCH_PROFILE"):  # where to write a cProfile of the gateway (slows it down)
            command = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                os.environ["BENCH_PROFILE"],
                "-m",
                "callstream.gateway",
                "serve",
            ]
        procs.append(start(command, env, work / "gateway.log"))
        wait_http(f"http://127.0.0.1:{gw_port}/health/ready")
        created = httpx.post(
            f"http://127.0.0.1:{gw_port}/v1/integrations",
            json={
                "workspace_id": "bench",
                "provider": "fathom",
                "credentials": {"api_key": "k"},
                "webhook_secret": SECRET,
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        created.raise_for_status()
        integration_id = created.json()["id"]
        path = f"/v1/webhooks/fathom/{integration_id}"

        ceiling_env = dict(
            os.environ, BENCH_NATS_URL=nats_server.url, BENCH_SECRET=SECRET, BENCH_PORT=str(ceiling_port)
        )
        procs.append(start([sys.executable, str(HERE / "ceiling_app.py")], ceiling_env, work / "ceiling.log"))
        raw_env = dict(ceiling_env, BENCH_PORT=str(raw_port), BENCH_RAW_ASGI="1")
        rule_env = dict(raw_env, BENCH_PORT=str(rule_port), BENCH_RULE="1")
        procs.append(start([sys.executable, str(HERE / "ceiling_app.py")], raw_env, work / "ceiling_raw.log"))
        procs.append(start([sys.executable, str(HERE / "ceiling_app.py")], rule_env, work / "ceiling_rule.log"))
        wait_port(ceiling_port)
        wait_port(raw_port)
        wait_port(rule_port)

        sides = {
            "gateway": f"http://127.0.0.1:{gw_port}",
            "ceiling": f"http://127.0.0.1:{ceiling_port}",
            "ceiling_raw_asgi": f"http://127.0.0.1:{raw_port}",
            "ceiling_raw_asgi_rule": f"http://127.0.0.1:{rule_port}",
        }
        pids = {
            "gateway": procs[0].pid,
            "ceiling": procs[1].pid,
            "ceiling_raw_asgi": procs[2].pid,
            "ceiling_raw_asgi_rule": procs[3].pid,
        }
        names = list(sides)
        # Each side's webhook ids are its own: a repeated id is a duplicate, which JetStream answers
        # without storing, and that would flatter whichever side sent it second.
        tags = {"gateway": "gw", "ceiling": "ce", "ceiling_raw_asgi": "ra", "ceiling_raw_asgi_rule": "rr"}
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]  # each side first in turn
            figures: dict[str, Any] = {"first": order[0]}
            for side in order:
                figures[side] = measure(
                    f"{tags[side]}{number}", wrk, sides[side], path, body_file, work, args, nats_server.url, pids[side]
                )
            figures["ratio"] = round(figures["gateway"]["rps"] / figures["ceiling"]["rps"], 3)
            figures["ratio_to_raw_asgi"] = round(figures["gateway"]["rps"] / figures["ceiling_raw_asgi"]["rps"], 3)
            figures["ratio_to_raw_asgi_rule"] = round(
                figures["gateway"]["rps"] / figures["ceiling_raw_asgi_rule"]["rps"], 3
            )
            rounds.append(figures)
    finally:
        for proc in procs:
            stop(proc)
        nats_server.stop()
        pg.stop("immediate")
    gw, top, raw = summary(rounds, "gateway"), summary(rounds, "ceiling"), summary(rounds, "ceiling_raw_asgi")
    rule = summary(rounds, "ceiling_raw_asgi_rule")
    ratio = round(float(gw["rps"]) / float(top["rps"]), 3) if top["rps"] else 0.0
    report = {
        "benchmark": "gateway_intake",
        "mode": "smoke" if args.smoke else "full",
        "body_bytes": len(body),
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds_run": len(rounds),
        "gateway": gw,
        "ceiling": top,
        "ratio": ratio,
        "cpu_ratio": round(top["cpu_us_per_request"] / gw["cpu_us_per_request"], 3) if gw["cpu_us_per_request"] else 0,
        "ceiling_raw_asgi": raw,
        "ratio_to_raw_asgi": round(float(gw["rps"]) / float(raw["rps"]), 3) if raw["rps"] else 0.0,
        "cpu_ratio_to_raw_asgi": (
            round(raw["cpu_us_per_request"] / gw["cpu_us_per_request"], 3) if gw["cpu_us_per_request"] else 0
        ),
        "ceiling_raw_asgi_rule": rule,
        "ratio_to_raw_asgi_rule": round(float(gw["rps"]) / float(rule["rps"]), 3) if rule["rps"] else 0.0,
        "cpu_ratio_to_raw_asgi_rule": (
            round(rule["cpu_us_per_request"] / gw["cpu_us_per_request"], 3) if gw["cpu_us_per_request"] else 0
        ),
        "rounds": rounds,
        "target": TARGET,
        "meets_target": ratio >= TARGET["ratio_min"] and float(gw["p99_ms"]) <= TARGET["p99_ms_max"],
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    ok = all(side["non_2xx"] == 0 for side in (gw, top, raw, rule))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
