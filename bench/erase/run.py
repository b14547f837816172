"""bench/erase: erase an integration with 50,000 messages while the linker serves another's (issue #19).

On its own embedded PostgreSQL and NATS, with the gateway, normalizer, scheduler and linker as real
processes (each with its own NATS identity, as deployed):

1. Two Fathom integrations of one workspace through the gateway's admin API, A and B, and a read
   token for the workspace.
2. N meetings for A (50,000) and a few hundred for B, published as ``RawCall`` events straight to
   ``calls.raw.fathom.<integration_id>`` with the operator's credentials (what a pull run publishes,
   without the provider in between), then a wait until the normalizer has stored every one. A's
   meetings name ~500 external companies and ~2,000 people of their own; both integrations share
   the recording team's internal people (contacts B still needs after A is gone).
3. A steady linker load at a fixed rate (an open loop: a slow answer does not slow the sender), half
   ``GET /v1/links?workspace_id&source&external_id`` (the hot-link cache), half
   ``GET /v1/messages/{id}`` (a database read), all of B's messages with the read token: a baseline
   period, then ``DELETE /v1/integrations/{A}?erase=true`` on the gateway and ``GET
   /v1/erasures/{id}`` every 0.2 s until the job is ``done``, the load going on throughout.
4. Afterwards: A's messages and raw events left (must be 0), B's intact (must be all).

Prints one JSON object: messages_erased, erase_seconds (until the job is ``done``), when the
erased integration's last message row and last raw event went (``gone_seconds``), each service's
part (``part_seconds``), the job's counts (summed and per service),
the linker's p50/p99 before and during, the seconds of the erasure whose p99 was more than twice
the baseline's, requests failed (not 200, or no answer). No target yet (issue #19 asks for the report).

    .venv/bin/python bench/erase/run.py [--n 50000] [--n-other 300] [--rate 200] [--baseline-seconds 20] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats

from callstream.contracts import CALLS_RAW, RawCall, pull_event_id, raw_calls_subject
from callstream.devstack import admin_headers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "e2e_latency"))

from _http1 import Http1Pool, request_bytes  # noqa: E402  (the latency benchmark's lean client)

from tests.faults.chaos import EXAMPLE, Chaos  # noqa: E402

WORKSPACE = "erase-bench"
SERVICES = ("gateway", "normalizer", "scheduler", "linker")
FIRST_ID_A = 900_000_000
FIRST_ID_B = 950_000_000
COMPANIES_A, PEOPLE_A = 500, 2000
COMPANIES_B, PEOPLE_B = 50, 200
POLL_SECONDS = 0.2
LINKER_CONNECTIONS = 16
DELETE_TIMEOUT = 60.0  # the gateway answers 202 once its own part is done and the request published


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def meeting(template: dict[str, Any], recording_id: int, tag: str, companies: int, people: int) -> bytes:
    """The example meeting with its own id and share link, and external people of its integration's
    own companies (``tag``); the internal invitees (the recording team) are every meeting's."""
    company = f"{tag}-customer-{recording_id % companies}.com"
    person = recording_id % people
    invitees = [dict(i) for i in template["calendar_invitees"]]
    for invitee in invitees:
        if invitee.get("is_external"):
            local = (invitee["email"] or "someone@x").split("@")[0]
            invitee["email"] = f"{local}.{person}@{company}"
            invitee["email_domain"] = company
    body = dict(
        template,
        recording_id=recording_id,
        share_url=f"https://fathom.video/share/{tag}{recording_id}",
        url=f"https://fathom.video/calls/{recording_id}",
        title=f"{template['title']} #{recording_id}",
        calendar_invitees=invitees,
    )
    return json.dumps(body).encode()


async def create(gateway: httpx.AsyncClient) -> tuple[str, str, str]:
    ids = []
    for name in ("a", "b"):
        r = await gateway.post(
            "/v1/integrations",
            json={"workspace_id": WORKSPACE, "provider": "fathom", "credentials": {"api_key": f"key-{name}"}},
        )
        r.raise_for_status()
        ids.append(r.json()["id"])
    r = await gateway.post("/v1/tokens", json={"workspace_ids": [WORKSPACE], "name": "bench-erase"})
    r.raise_for_status()
    return ids[0], ids[1], r.json()["token"]


async def publish(js: Any, integration_id: str, first_id: int, n: int, tag: str, companies: int, people: int) -> None:
    """N raw calls as a pull run publishes them (``Nats-Msg-Id`` = the event id), many in flight."""
    template = json.loads(EXAMPLE.read_text())
    subject = raw_calls_subject("fathom", integration_id)
    pending: list[asyncio.Future[Any]] = []
    for i in range(n):
        recording_id = first_id + i
        payload = meeting(template, recording_id, tag, companies, people)
        event_id = pull_event_id(integration_id, str(recording_id), payload)
        call = RawCall(
            event_id=event_id,
            source="fathom",
            workspace_id=WORKSPACE,
            integration_id=integration_id,
            external_id=str(recording_id),
            origin="pull",
            received_at=datetime.now(UTC),
            payload=msgspec.Raw(payload),
        )
        pending.append(await js.publish_async(subject, msgspec.json.encode(call), headers={"Nats-Msg-Id": event_id}))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def stored(conn: asyncpg.Connection, integration_id: str) -> int:
    return int(await conn.fetchval("select count(*) from messages where integration_id = $1", integration_id))


async def raw_events(js: Any, integration_id: str) -> int:
    """The integration's raw events left in CALLS_RAW (its own subject token)."""
    subject = raw_calls_subject("fathom", integration_id)
    info = await js.stream_info(CALLS_RAW, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def wait_stored(conn: asyncpg.Connection, wanted: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = {i: await stored(conn, i) for i in wanted}
        if all(counts[i] >= n for i, n in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"stored {counts} of {wanted} after {timeout:.0f}s")
        await asyncio.sleep(0.5)


@dataclass
class Load:
    """A fixed-rate linker load; each answer's latency is counted from when it was due to be sent."""

    linker: Http1Pool
    requests: list[bytes]
    rate: float
    answers: list[tuple[float, float, int]] = field(default_factory=list)  # (due, latency ms, status)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        started = time.perf_counter()
        i = 0
        while not self.stop.is_set():
            due = started + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.linker.submit(self.requests[i % len(self.requests)], self._on_answer(due))
            i += 1

    def _on_answer(self, due: float) -> Any:
        def on_answer(status: int, _body: bytes) -> None:
            self.answers.append((due, (time.perf_counter() - due) * 1000, status))

        return on_answer

    def between(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [a for a in self.answers if start <= a[0] < end]


def summary(answers: list[tuple[float, float, int]]) -> dict[str, Any]:
    ok = [ms for _, ms, status in answers if status == 200]
    return {
        "requests": len(answers),
        "failed": sum(1 for _, _, status in answers if status != 200),
        "p50_ms": _pct(ok, 0.50),
        "p99_ms": _pct(ok, 0.99),
        "max_ms": round(max(ok), 2) if ok else None,
    }


async def measure(chaos: Chaos, n: int, n_other: int, rate: float, baseline: float, timeout: float) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "erase", "n": n, "n_other": n_other, "rate_per_s": rate}
    gateway = httpx.AsyncClient(base_url=chaos.procs["gateway"].url, headers=admin_headers(chaos.env, "gateway"))
    db = await asyncpg.connect(chaos.env["CALLSTREAM_DATABASE_URL"])
    nc = await nats.connect(chaos.nats.url)  # the operator: raw calls come from the gateway otherwise
    try:
        a, b, token = await create(gateway)
        js = nc.jetstream(timeout=10.0)
        started = time.perf_counter()
        await publish(js, a, FIRST_ID_A, n, "a", COMPANIES_A, PEOPLE_A)
        await publish(js, b, FIRST_ID_B, n_other, "b", COMPANIES_B, PEOPLE_B)
        result["publish_seconds"] = round(time.perf_counter() - started, 1)
        await wait_stored(db, {a: n, b: n_other}, timeout)
        result["store_seconds"] = round(time.perf_counter() - started, 1)
        before = {"a": await stored(db, a), "b": await stored(db, b)}
        raw_before = await raw_events(js, a)

        rows = await db.fetch("select id, external_id from messages where integration_id = $1", b)
        linker = Http1Pool(chaos.procs["linker"].url, connections=LINKER_CONNECTIONS)
        auth = {"Authorization": f"Bearer {token}"}
        requests = []
        for row in rows:
            link = f"/v1/links?workspace_id={WORKSPACE}&source=fathom&external_id={row['external_id']}"
            requests.append(request_bytes("GET", link, linker.netloc, auth))
            requests.append(request_bytes("GET", f"/v1/messages/{row['id']}", linker.netloc, auth))
        load = Load(linker, requests, rate)
        sender = asyncio.create_task(load.run())
        job: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            await asyncio.sleep(baseline)
            t1 = t2 = time.perf_counter()
            try:
                job = await erase(gateway, db, js, a, timeout, result)
            except Exception as exc:  # reported with the figures measured so far
                result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            t2 = time.perf_counter()
            await asyncio.sleep(min(baseline, 5.0))  # a short tail after the job, under the same load
            t3 = time.perf_counter()
        finally:
            load.stop.set()
            await sender
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(linker.queue.join(), timeout=30)
            await linker.close()

        after = {"a": await stored(db, a), "b": await stored(db, b)}
        raw_after = await raw_events(js, a)
        base, during, tail = load.between(t0, t1), load.between(t1, t2), load.between(t2, t3)
        base_p99 = summary(base)["p99_ms"] or 0.0
        per_second: dict[int, list[float]] = {}
        for due, ms, status in during:
            if status == 200:
                per_second.setdefault(int(due - t1), []).append(ms)
        above = sum(1 for values in per_second.values() if (_pct(values, 0.99) or 0) > 2 * base_p99)
        statuses = Counter(status for _, _, status in load.answers)
        result.update(
            {
                "erasure_status": job.get("status"),
                "messages_erased": before["a"] - after["a"],
                "erase_seconds": round(t2 - t1, 2),
                "counts": job.get("counts"),
                "parts": {k: v.get("counts") for k, v in (job.get("parts") or {}).items()},
                "part_seconds": _part_seconds(job),
                "left": {"messages": after["a"], "raw_events": raw_after, "raw_events_before": raw_before},
                "other_intact": after["b"] == before["b"] == n_other,
                "linker": {
                    "before": summary(base),
                    "during": summary(during),
                    "after": summary(tail),
                    "p99_rise_ms": round((summary(during)["p99_ms"] or 0.0) - base_p99, 2),
                    "seconds_p99_above_2x_baseline": above,
                },
                "requests_failed": sum(v for k, v in statuses.items() if k != 200) + linker.errors,
                "answers": {str(k): v for k, v in sorted(statuses.items())},
                "connection_errors": linker.errors,
            }
        )
        result["ok"] = (
            "error" not in result
            and job.get("status") == "done"
            and after["a"] == 0
            and raw_after == 0
            and result["other_intact"]
            and result["requests_failed"] == 0
        )
        return result
    finally:
        await gateway.aclose()
        await db.close()
        await nc.close()


async def erase(
    gateway: httpx.AsyncClient,
    db: asyncpg.Connection,
    js: Any,
    integration_id: str,
    timeout: float,
    result: dict[str, Any],
) -> Any:
    """``DELETE ?erase=true``, then the job's state every POLL_SECONDS until it is done. Once a
    second it also looks whether any of the integration's messages (rows) and raw events are left,
    to tell when each went (``gone_seconds``)."""
    started = time.perf_counter()
    r = await gateway.delete(f"/v1/integrations/{integration_id}", params={"erase": "true"}, timeout=DELETE_TIMEOUT)
    result["delete_answer_seconds"] = round(time.perf_counter() - started, 2)
    if r.status_code != 202:
        raise RuntimeError(f"DELETE ?erase=true answered {r.status_code}: {r.text[:500]}")
    erasure_id = r.json()["erasure_id"]
    gone: dict[str, float] = {}
    result["gone_seconds"] = gone
    looked = 0.0
    while True:
        job = (await gateway.get(f"/v1/erasures/{erasure_id}")).raise_for_status().json()
        now = time.perf_counter()
        if now - looked >= 1.0 or job["status"] == "done":
            looked = now
            if "messages" not in gone and not await db.fetchval(
                "select exists (select 1 from messages where integration_id = $1)", integration_id
            ):
                gone["messages"] = round(now - started, 1)
            if "raw_events" not in gone and await raw_events(js, integration_id) == 0:
                gone["raw_events"] = round(now - started, 1)
        if job["status"] == "done":
            return job
        if now - started > timeout:
            raise TimeoutError(f"erasure not done after {timeout:.0f}s: {json.dumps(job)[:1000]}")
        await asyncio.sleep(POLL_SECONDS)


def _part_seconds(job: dict[str, Any]) -> dict[str, float]:
    """Each service's part: from the request to its ErasureFinished, as the job recorded them."""
    out: dict[str, float] = {}
    requested = job.get("requested_at")
    for name, part in (job.get("parts") or {}).items():
        if requested and part.get("finished_at"):
            delta = datetime.fromisoformat(part["finished_at"]) - datetime.fromisoformat(requested)
            out[name] = round(delta.total_seconds(), 2)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="callstream-bench-erase-"))
    chaos = Chaos(base, services=SERVICES)
    try:
        await chaos.start()
        return await measure(chaos, args.n, args.n_other, args.rate, args.baseline_seconds, args.timeout)
    finally:
        await chaos.stop()
        if args.keep_logs:
            print(f"logs kept in {base / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="meetings of the integration erased")
    parser.add_argument("--n-other", type=int, default=300, help="meetings of the integration kept")
    parser.add_argument("--rate", type=float, default=200.0, help="linker requests per second")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="for storing, and for the erasure")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (printed where)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.n_other, args.rate, args.baseline_seconds, args.timeout = 200, 50, 50.0, 2.0, 120.0
    try:
        result = asyncio.run(main_async(args))
    except Exception as exc:  # one JSON object whatever happens, as bench/run reads it
        traceback.print_exc()
        result = {"benchmark": "erase", "error": f"{type(exc).__name__}: {exc}"[:2000], "ok": False}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
