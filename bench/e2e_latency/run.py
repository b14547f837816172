"""bench/e2e_latency: signed Fathom webhooks at a fixed rate (500/s for 30 s by default) through the
real gateway, normalizer and linker processes on embedded servers; for each meeting, the time from
the gateway's 202 to the linker serving its link. Prints one JSON object with p50/p99 and the targets.

The linker is asked once per meeting, when its MessageUpserted event arrives (the outbox publishes
after commit), and again every 5 ms until it answers 200, so the load on the linker stays one or two
requests per meeting instead of a polling storm that would distort what it measures.

    .venv/bin/python bench/e2e_latency/run.py [--rate 500] [--seconds 30] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults.chaos import EXAMPLE, WORKSPACE, Chaos  # noqa: E402

TARGET_P50_MS = 30.0
TARGET_P99_MS = 150.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(chaos: Chaos, rate: float, seconds: float) -> dict[str, object]:
    integration_id, secret = await chaos.integration()
    webhook = Webhook(secret)
    template = json.loads(EXAMPLE.read_text())
    accepted_at: dict[str, float] = {}
    served_ms: list[float] = []
    failures = 0
    admin = {"Authorization": f"Bearer {chaos.env['CALLSTREAM_ADMIN_TOKEN']}"}
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    gateway = httpx.AsyncClient(base_url=chaos.procs["gateway"].url, timeout=10, limits=limits)
    linker = httpx.AsyncClient(base_url=chaos.procs["linker"].url, timeout=10, limits=limits, headers=admin)
    nc = await nats.connect(chaos.nats.url)
    js = nc.jetstream()
    done = asyncio.Event()
    confirming: set[asyncio.Task[None]] = set()
    early: set[str] = set()
    expected = int(rate * seconds)

    unserved = 0

    async def confirm(external_id: str) -> None:
        nonlocal unserved
        for _ in range(200):  # at most ~1 s of asking: a link not served by then is counted, not awaited
            r = await linker.get(
                "/v1/links", params={"workspace_id": WORKSPACE, "source": "fathom", "external_id": external_id}
            )
            if r.status_code == 200 and r.json().get("url"):
                served_ms.append((time.perf_counter() - accepted_at[external_id]) * 1000)
                break
            await asyncio.sleep(0.005)
        else:
            unserved += 1
        if len(served_ms) + unserved >= expected:
            done.set()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        event = json.loads(msg.data)
        if event["external_id"] not in accepted_at:
            early.add(event["external_id"])  # the event beat the 202 to this client: confirm on the 202
        else:
            task = asyncio.create_task(confirm(event["external_id"]))
            confirming.add(task)
            task.add_done_callback(confirming.discard)

    sub = await js.subscribe("messages.upserted.fathom", cb=on_event, ordered_consumer=True)

    # Signed before the clock starts, so the sender's CPU goes to sending (the signatures stay
    # well inside the gateway's five-minute tolerance).
    now = datetime.now(tz=UTC)
    prepared = {}
    for i in range(expected):
        recording_id = 800_000_000 + i
        body = json.dumps(dict(template, recording_id=recording_id)).encode()
        webhook_id = f"msg_lat_{recording_id}"
        prepared[recording_id] = (
            body,
            {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
                "content-type": "application/json",
            },
        )

    async def send(recording_id: int) -> None:
        nonlocal failures
        body, headers = prepared[recording_id]
        r = await gateway.post(f"/v1/webhooks/fathom/{integration_id}", content=body, headers=headers)
        if r.status_code == 202:
            accepted_at[str(recording_id)] = time.perf_counter()
            if str(recording_id) in early:
                task = asyncio.create_task(confirm(str(recording_id)))
                confirming.add(task)
                task.add_done_callback(confirming.discard)
        else:
            failures += 1

    started = time.perf_counter()
    tasks = []
    for i in range(expected):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(800_000_000 + i)))
    await asyncio.gather(*tasks)
    send_seconds = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=60)
    await sub.unsubscribe()
    await nc.close()
    await gateway.aclose()
    await linker.aclose()
    p50, p99 = _pct(served_ms, 0.50), _pct(served_ms, 0.99)
    return {
        "benchmark": "e2e_latency",
        "rate_target_per_s": rate,
        "rate_achieved_per_s": round(expected / send_seconds, 1),
        "seconds": seconds,
        "sent": expected,
        "accepted": len(accepted_at),
        "rejected": failures,
        "served": len(served_ms),
        "unserved_after_1s": unserved,
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "mean_ms": round(statistics.fmean(served_ms), 1) if served_ms else None,
        "max_ms": round(max(served_ms), 1) if served_ms else None,
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS,
    }


async def main_async(rate: float, seconds: float) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="callstream-bench-latency-"))
    chaos = Chaos(base)
    try:
        await chaos.start()
        return await measure(chaos, rate, seconds)
    finally:
        await chaos.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args()
    rate, seconds = (50.0, 2.0) if args.smoke else (args.rate, args.seconds)
    result = asyncio.run(main_async(rate, seconds))
    print(json.dumps(result))
    return 0 if result["served"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
