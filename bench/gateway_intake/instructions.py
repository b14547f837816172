"""Benchmark: instructions per webhook, counted by valgrind (callgrind), gateway vs. the bare ceilings.

    .venv/bin/python bench/gateway_intake/instructions.py [--smoke] [--requests 400]

``run.py`` measures requests per second, and on two shared cores one round can differ from the next
by a third (bench/README.md). This counts what each server executes instead: each side runs under
callgrind on the same embedded NATS (the gateway on an embedded PostgreSQL), gets a warm-up, then its
counters are zeroed (``callgrind_control -z``), ``--requests`` signed 20 KB webhooks are sent by a
client outside valgrind (16 at a time), and the counters are dumped (``callgrind_control -d``).
Instructions per request do not move with the machine's load: two runs agree to a fraction of a
percent, so a change of a few percent in the gateway's path shows.

Sides: ``gateway`` (the real ingest-gateway), ``ceiling_raw_asgi`` (the bare ASGI app probing
``recording_id``) and ``ceiling_raw_asgi_rule`` (the bare ASGI app applying the gateway's whole
payload rule). Prints one JSON object: instructions per request for each side and the ratios
(ceiling over gateway: 1.0 means the gateway executes no more than the ceiling). Where valgrind is
not installed it prints ``{"skipped": ...}`` and exits 0: it is an OS package (``apt-get install
valgrind``), not something ``./dev`` can install.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # this folder is not a package: run.py is imported by path
    ADMIN_TOKEN,
    BIN,
    HERE,
    SECRET,
    EmbeddedPostgres,
    NatsServer,
    create_database,
    fathom_body,
    free_port,
    prepare,
    service_nats_env,
    start,
    stop,
    wait_http,
)

KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
SIDES = ("gateway", "ceiling_raw_asgi", "ceiling_raw_asgi_rule")


def _signed(body: bytes, webhook_id: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = base64.b64encode(hmac.new(KEY, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + sig,
    }


async def _send(url: str, body: bytes, ids: list[str]) -> dict[int, int]:
    """Post one webhook per id, 16 at a time; the answers by status."""
    statuses: dict[int, int] = {}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one(webhook_id: str) -> None:
            async with limit:
                answer = await client.post(url, content=body, headers=_signed(body, webhook_id))
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        await asyncio.gather(*(one(i) for i in ids))
    return statuses


def _summary_instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {dump}")


def measure(side: str, work: Path, nats_url: str, dsn: str, body: bytes, warm: int, requests: int) -> dict[str, object]:
    port = free_port()
    out = work / f"callgrind.{side}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    if side == "gateway":
        env = dict(
            os.environ,
            CALLSTREAM_DATABASE_URL=dsn,
            CALLSTREAM_NATS_URL=nats_url,
            CALLSTREAM_GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            CALLSTREAM_SECRET_KEY="k1:" + secrets.token_urlsafe(32),
            CALLSTREAM_GATEWAY_PORT=str(port),
            CALLSTREAM_LOG_FORMAT="json",
            CALLSTREAM_LOG_LEVEL="info",
        )
        env = service_nats_env("gateway", env)  # its own identity and permissions, as deployed
        subprocess.run([str(BIN / "callstream-gateway"), "migrate"], env=env, check=True, capture_output=True)
        proc = start([*valgrind, sys.executable, "-m", "callstream.gateway", "serve"], env, work / f"{side}.log")
        wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=300)
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/integrations",
            json={
                "workspace_id": "bench",
                "provider": "fathom",
                "credentials": {"api_key": "k"},
                "webhook_secret": SECRET,
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=120,
        )
        created.raise_for_status()
        path = f"/v1/webhooks/fathom/{created.json()['id']}"
    else:
        env = dict(os.environ, BENCH_NATS_URL=nats_url, BENCH_SECRET=SECRET, BENCH_PORT=str(port), BENCH_RAW_ASGI="1")
        if side == "ceiling_raw_asgi_rule":
            env["BENCH_RULE"] = "1"
        proc = start([*valgrind, sys.executable, str(HERE / "ceiling_app.py")], env, work / f"{side}.log")
        wait_http(f"http://127.0.0.1:{port}/", timeout=300)  # any answer: the bare app is up
        path = "/v1/webhooks/fathom/0b0e2a39-6a4b-4a67-9d55-1a2b3c4d5e6f"
    url = f"http://127.0.0.1:{port}{path}"
    try:
        asyncio.run(_send(url, body, [f"{side}-warm-{i}" for i in range(warm)]))
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        statuses = asyncio.run(_send(url, body, [f"{side}-{i}" for i in range(requests)]))
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        dumps = sorted(work.glob(f"callgrind.{side}.{proc.pid}.*"))
        if not dumps:
            raise RuntimeError(f"{side}: callgrind wrote no dump")
        instructions = _summary_instructions(dumps[-1])
    finally:
        stop(proc)
    return {"instructions_per_request": round(instructions / requests), "statuses": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few requests per side (CI)")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print(json.dumps({"benchmark": "gateway_intake_instructions", "skipped": "valgrind is not installed"}))
        return 0
    warm, requests = (10, 10) if args.smoke else (200, args.requests)
    # Smoke (CI): the gateway alone, which proves the harness on the real service; each side under
    # valgrind starts in ~30 s, and CI's whole run should stay under 30 minutes.
    sides_run = ("gateway",) if args.smoke else SIDES
    work = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    body = fathom_body()
    pg = EmbeddedPostgres(work / "pg", port=free_port(), durable=False)
    nats_server = NatsServer(work / "js", port=free_port(), name="bench-instructions-nats")
    sides: dict[str, dict[str, object]] = {}
    try:
        pg.start()
        nats_server.start()
        asyncio.run(create_database(pg.dsn()))
        asyncio.run(prepare(nats_server.url))
        for side in sides_run:
            sides[side] = measure(side, work, nats_server.url, pg.dsn("bench"), body, warm, requests)
    finally:
        nats_server.stop()
        pg.stop("immediate")
        shutil.rmtree(work, ignore_errors=True)
    gateway = float(sides["gateway"]["instructions_per_request"])  # type: ignore[arg-type]

    def ratio(ceiling: str) -> float | None:
        if ceiling not in sides:
            return None
        return round(float(sides[ceiling]["instructions_per_request"]) / gateway, 3)  # type: ignore[arg-type]

    report = {
        "benchmark": "gateway_intake_instructions",
        "mode": "smoke" if args.smoke else "full",
        "body_bytes": len(body),
        "requests": requests,
        **sides,
        "ratio_to_raw_asgi": ratio("ceiling_raw_asgi"),
        "ratio_to_raw_asgi_rule": ratio("ceiling_raw_asgi_rule"),
    }
    print(json.dumps(report, indent=2))
    return 0 if all(side["statuses"] == {202: requests} for side in sides.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
