"""bench/e2e_latency: signed Fathom webhooks at a fixed rate (500/s for 30 s by default) through the
real gateway, normalizer and linker processes on embedded servers; for each meeting, the time from
the gateway's 202 to the linker serving its link. Prints one JSON object with p50/p99 and the targets.

The linker is asked once per meeting, when its MessageUpserted event arrives (the outbox publishes
after commit), and again every 5 ms until it answers 200, so the load on the linker stays one or two
requests per meeting instead of a polling storm that would distort what it measures. Requests go out
on a fixed schedule through 64 keep-alive connections of a lean HTTP/1.1 client (``_http1.py``).

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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import nats
from standardwebhooks import Webhook

from callstream.devstack import admin_headers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _http1 import Http1Pool, request_bytes  # noqa: E402  (this folder, run as a script)

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
    admin = admin_headers(chaos.env, "linker")
    expected = int(rate * seconds)
    loop = asyncio.get_running_loop()
    accepted_at: dict[str, float] = {}
    served_ms: list[float] = []
    event_ms: list[float] = []  # 202 -> its MessageUpserted reached this client (the pipeline's share)
    early: set[str] = set()
    counts = {"rejected": 0, "unserved": 0, "asks": 0, "not_yet": 0}
    done = asyncio.Event()
    gateway = Http1Pool(chaos.procs["gateway"].url, connections=64)
    linker = Http1Pool(chaos.procs["linker"].url, connections=16)

    def settle() -> None:
        if len(served_ms) + counts["unserved"] + counts["rejected"] >= expected:
            done.set()

    def ask_linker(external_id: str, attempt: int = 0) -> None:
        path = f"/v1/links?workspace_id={WORKSPACE}&source=fathom&external_id={external_id}"
        counts["asks"] += 1

        def on_answer(status: int, body: bytes) -> None:
            if status == 200 and json.loads(body).get("url"):
                served_ms.append((time.perf_counter() - accepted_at[external_id]) * 1000)
                settle()
            elif attempt < 200:
                counts["not_yet"] += 1  # at most ~1 s of asking: a link not served by then is counted, not awaited
                loop.call_later(0.005, ask_linker, external_id, attempt + 1)
            else:
                counts["unserved"] += 1
                settle()

        linker.submit(request_bytes("GET", path, linker.netloc, admin), on_answer)

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        external_id = json.loads(msg.data)["external_id"]
        if external_id in accepted_at:
            event_ms.append((time.perf_counter() - accepted_at[external_id]) * 1000)
            ask_linker(external_id)
        else:
            early.add(external_id)  # the event beat the 202 to this client: ask on the 202

    nc = await nats.connect(chaos.nats.url)
    sub = await nc.jetstream().subscribe("messages.upserted.fathom", cb=on_event, ordered_consumer=True)

    # Signed and encoded before the clock starts, so the sender's CPU goes to sending (the signatures
    # stay well inside the gateway's five-minute tolerance).
    now = datetime.now(tz=UTC)
    path = f"/v1/webhooks/fathom/{integration_id}"
    prepared: list[tuple[str, bytes]] = []
    for i in range(expected):
        recording_id = 800_000_000 + i
        body = json.dumps(dict(template, recording_id=recording_id)).encode()
        webhook_id = f"msg_lat_{recording_id}"
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
            "content-type": "application/json",
        }
        prepared.append((str(recording_id), request_bytes("POST", path, gateway.netloc, headers, body)))

    def on_accepted(external_id: str) -> Callable[[int, bytes], None]:
        def on_answer(status: int, _body: bytes) -> None:
            if status != 202:
                counts["rejected"] += 1
                settle()
                return
            accepted_at[external_id] = time.perf_counter()
            if external_id in early:
                event_ms.append(0.0)
                ask_linker(external_id)

        return on_answer

    started = time.perf_counter()
    for i, (external_id, request) in enumerate(prepared):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        gateway.submit(request, on_accepted(external_id))
    await gateway.queue.join()  # every webhook answered
    send_seconds = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=60)
    await sub.unsubscribe()
    await nc.close()
    await gateway.close()
    await linker.close()
    p50, p99 = _pct(served_ms, 0.50), _pct(served_ms, 0.99)
    return {
        "benchmark": "e2e_latency",
        "rate_target_per_s": rate,
        "rate_achieved_per_s": round(expected / send_seconds, 1),
        "seconds": seconds,
        "sent": expected,
        "accepted": len(accepted_at),
        "rejected": counts["rejected"],
        "connection_errors": gateway.errors + linker.errors,
        "served": len(served_ms),
        "linker_requests": counts["asks"],
        "answers_without_link": counts["not_yet"],
        "unserved_after_1s": counts["unserved"],
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "mean_ms": round(statistics.fmean(served_ms), 1) if served_ms else None,
        "event_p50_ms": round(_pct(event_ms, 0.50), 1),
        "event_p99_ms": round(_pct(event_ms, 0.99), 1),
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
