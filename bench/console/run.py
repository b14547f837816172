"""bench/console: the console's pages `/`, `/integrations` (also filtered by a status the sync state
decides) and `/messages` at 1,000 integrations and 100,000 messages (issue #18: p95 <= 150 ms each).

On its own embedded PostgreSQL and NATS, the gateway, normalizer, linker and scheduler as real
processes (each with its own NATS identity) and the console as its own process with the services'
URLs and admin tokens (``console_env``, as ``./dev up`` starts it):

1. Integrations through the gateway's admin API (``POST /v1/integrations``, encrypted credentials,
   as an operator or a connect session adds them): N (1,000) over N/2 workspaces, each a Fathom (with
   a webhook secret) and a Gong. 1 in 50 disabled through ``DELETE /v1/integrations/{id}``; 1 in 50
   marked ``reauth_required`` in the gateway's table (what the gateway writes when a provider answers
   401; no provider here to answer it). ``created_at`` spread over the last 90 days.
2. Messages through the normalizer's bulk path: M (100,000) ``RawCall`` events published to
   ``calls.raw.<provider>.<integration_id>`` with the operator's credentials (what a pull run
   publishes, without the provider in between), M / (active integrations) each, their meetings spread
   over 90 days, then a wait until the normalizer has stored every one. Rows made by the real
   mapping and store (messages, participants, customers, contacts), not by hand, so the linker's
   queries run on the tables a deployment has.
3. The scheduler's state and runs written straight into its tables (``sync_state``, ``sync_runs``)
   before it starts: a month of hourly runs per integration (720: the default cadence and the 30
   days' retention keep that many), which a due loop could only make in a month. Most integrations'
   last run succeeded; 1 in 20 has failed its last three (``error``), 1 in 20 has a run going now
   (``running``, moving), the reauth ones' last run ended ``reauth_required``. Every state is next
   due in the future, so the due loop starts nothing while the pages are measured.
4. Sign in to the console with its operator token (``/login``, CSRF as a browser does), then GET
   each page with ``--concurrency`` (4) clients in ``--rounds`` alternating rounds, ``--requests``
   in all per page: the console's page, then its ceiling.

A page's **ceiling** (the repo's rule: compare against a ceiling measured in the same run) is the
best configuration known for it: the backend API calls that page needs, made directly from this
process with httpx (the console's client) at the same concurrency, in the same order and the same
parallelism as the page makes them, with nothing rendered. ``ratio`` is the page's p95 over its
ceiling's: what the console adds (session, rendering, its own event loop).

Prints one JSON object: per page p50/p95/p99/max, requests, failed, bytes, its ceiling's figures,
the ratio, the target (150 ms) and ``ok`` (p95 <= target and no request failed).

    .venv/bin/python bench/console/run.py [--integrations 1000] [--messages 100000] [--requests 400]
                                          [--concurrency 4] [--rounds 4] [--keep-logs] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats

from callstream.contracts import RawCall, pull_event_id, raw_calls_subject
from callstream.devstack import CONSOLE_ADMIN_TOKEN_ENV, ServiceProcess, admin_headers, by_name, console_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults.chaos import EXAMPLE, Chaos  # noqa: E402

GONG_EXAMPLES = ROOT / "services" / "normalizer" / "tests" / "examples"
TARGET_MS = 150.0
FAILING = "/integrations?status=failing"  # a status the sync state decides: a page of the scheduler's
PAGES = ("/", "/integrations", FAILING, "/messages")
# What the console's pages use today (services/console/src/callstream/console/_app.py, _backend.py):
# a page of 50 messages and of 50 integrations, the overview's at most 500 rows that need a
# person, health asked 100 integrations a request.
MESSAGES_PER_PAGE = 50
INTEGRATIONS_PER_PAGE = 50
ATTENTION_ROWS = 500
HEALTH_BATCH = 100
RUNS_EVERY = timedelta(hours=1)  # the scheduler's default cadence (CALLSTREAM_SCHEDULER_CADENCE_SECONDS)
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')
CREATE_CONCURRENCY = 8
SPREAD_DAYS = 90


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def summary(latencies: list[float], failed: int, size: int) -> dict[str, Any]:
    return {
        "requests": len(latencies) + failed,
        "failed": failed,
        "p50_ms": _pct(latencies, 0.50),
        "p95_ms": _pct(latencies, 0.95),
        "p99_ms": _pct(latencies, 0.99),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "bytes": size,
    }


def workspace_of(i: int) -> str:
    return f"ws-{i // 2:05d}"


def provider_of(i: int) -> str:
    return "fathom" if i % 2 == 0 else "gong"


def kind_of(i: int) -> str:
    """What the integration's history looks like (see the module's docstring)."""
    if i % 50 == 3:
        return "disabled"
    if i % 50 == 7:
        return "reauth"
    if i % 20 == 5:
        return "failing"
    if i % 20 == 11:
        return "syncing"
    return "healthy"


# ---- 1. integrations --------------------------------------------------------------------------------
async def create_integrations(gateway: httpx.AsyncClient, db: asyncpg.Connection, n: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(i: int) -> dict[str, Any]:
        provider = provider_of(i)
        body: dict[str, Any] = {"workspace_id": workspace_of(i), "provider": provider}
        if provider == "fathom":
            body["credentials"] = {"api_key": f"fathom-key-{i}"}
            body["webhook_secret"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        else:
            body["credentials"] = {"access_key": f"gong-key-{i}", "access_key_secret": f"gong-secret-{i}"}
        async with gate:
            r = await gateway.post("/v1/integrations", json=body)
            r.raise_for_status()
            created = r.json()
            if kind_of(i) == "disabled":
                (await gateway.delete(f"/v1/integrations/{created['id']}")).raise_for_status()
        return {
            "i": i,
            "id": created["id"],
            "workspace_id": body["workspace_id"],
            "provider": provider,
            "kind": kind_of(i),
        }

    made = list(await asyncio.gather(*(one(i) for i in range(n))))
    now = datetime.now(UTC)
    await db.executemany(
        "update integrations set created_at = $2, updated_at = $2,"
        " status = case when $3 then 'reauth_required' else status end where id = $1",
        [
            (uuid.UUID(x["id"]), now - timedelta(days=SPREAD_DAYS) * ((n - x["i"]) / n), x["kind"] == "reauth")
            for x in made
        ],
    )
    return made


# ---- 2. messages ------------------------------------------------------------------------------------
def fathom_payload(template: dict[str, Any], recording_id: int, at: datetime, company: str) -> bytes:
    invitees = [dict(x) for x in template["calendar_invitees"]]
    for invitee in invitees:
        if invitee.get("is_external"):
            local = (invitee["email"] or "someone@x").split("@")[0]
            invitee["email"], invitee["email_domain"] = f"{local}@{company}", company
    end = at + timedelta(minutes=30)
    body = dict(
        template,
        recording_id=recording_id,
        share_url=f"https://fathom.video/share/bench{recording_id}",
        url=f"https://fathom.video/calls/{recording_id}",
        title=f"{template['title']} #{recording_id}",
        created_at=iso(end),
        scheduled_start_time=iso(at),
        scheduled_end_time=iso(end),
        recording_start_time=iso(at),
        recording_end_time=iso(end),
        calendar_invitees=invitees,
    )
    return json.dumps(body).encode()


def gong_payload(call: dict[str, Any], transcript: dict[str, Any] | None, call_id: int, at: datetime) -> bytes:
    meta = dict(call["metaData"], id=str(call_id), started=iso(at), scheduled=iso(at))
    meta["url"] = f"https://app.gong.io/call?id={call_id}"
    body = {
        "call": dict(call, metaData=meta),
        "transcript": dict(transcript, callId=str(call_id)) if transcript else None,
    }
    return json.dumps(body).encode()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def publish_messages(js: Any, integrations: list[dict[str, Any]], total: int) -> dict[str, int]:
    """``total`` raw calls over the active integrations, as pull runs publish them; returns each
    integration's count."""
    fathom = json.loads(EXAMPLE.read_text())
    gong_call = json.loads((GONG_EXAMPLES / "gong_calls_extensive.json").read_text())["calls"][0]
    gong_transcript = json.loads((GONG_EXAMPLES / "gong_transcripts.json").read_text())["callTranscripts"][0]
    active = [x for x in integrations if x["kind"] != "disabled"]
    counts = {x["id"]: total // len(active) + (1 if k < total % len(active) else 0) for k, x in enumerate(active)}
    now = datetime.now(UTC)
    pending: list[asyncio.Future[Any]] = []
    external = 700_000_000
    for x in active:
        company = f"customer-{x['workspace_id']}.com"
        for k in range(counts[x["id"]]):
            external += 1
            at = now - timedelta(days=SPREAD_DAYS) * (k / max(counts[x["id"]], 1)) - timedelta(minutes=x["i"] % 60)
            if x["provider"] == "fathom":
                payload = fathom_payload(fathom, external, at, company)
            else:
                payload = gong_payload(gong_call, gong_transcript, external, at)
            event_id = pull_event_id(x["id"], str(external), payload)
            call = RawCall(
                event_id=event_id,
                source=x["provider"],
                workspace_id=x["workspace_id"],
                integration_id=x["id"],
                external_id=str(external),
                origin="pull",
                received_at=now,
                payload=msgspec.Raw(payload),
            )
            subject = raw_calls_subject(x["provider"], x["id"])
            pending.append(
                await js.publish_async(subject, msgspec.json.encode(call), headers={"Nats-Msg-Id": event_id})
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
    await asyncio.gather(*pending)
    return counts


async def wait_stored(db: asyncpg.Connection, wanted: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (stored := int(await db.fetchval("select count(*) from messages"))) < wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"stored {stored} of {wanted} messages after {timeout:.0f}s")
        await asyncio.sleep(1.0)


# ---- 3. the scheduler's state and history -------------------------------------------------------------
async def seed_scheduler(
    db: asyncpg.Connection, integrations: list[dict[str, Any]], counts: dict[str, int], runs: int
) -> int:
    """A month of hourly runs per integration and its state after the last, as the scheduler would
    have written them (see the module's docstring). Returns the runs written."""
    now = datetime.now(UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0)
    run_rows: list[tuple[Any, ...]] = []
    state_rows: list[tuple[Any, ...]] = []
    for x in integrations:
        key, kind, provider = uuid.UUID(x["id"]), x["kind"], x["provider"]
        per_run = max(counts.get(x["id"], 0) // max(runs, 1), 0)
        last_id = None
        last_finished = None
        for k in range(runs, 0, -1):  # oldest first; the newest (k = 1) ended within the last hour
            created = hour - RUNS_EVERY * (k - 1) + timedelta(minutes=x["i"] % 60) - RUNS_EVERY
            newest = k == 1
            status, error = "success", None
            if kind == "failing" and k <= 3:
                status, error = "error", f"{provider} answered HTTP 503 (service unavailable); retried with backoff"
            elif kind == "reauth" and newest:
                status, error = "reauth_required", f"{provider} refused the credentials (HTTP 401)"
            run_id = uuid.uuid4()
            finished = created + timedelta(seconds=20 + x["i"] % 40)
            run_rows.append(
                (run_id, key, x["workspace_id"], provider, "incremental", "schedule", created - RUNS_EVERY, created,
                 status, created, created, created, finished, finished, 1, per_run, error, per_run)
            )  # fmt: skip
            last_id, last_finished = run_id, finished
        if kind == "syncing":
            run_id = uuid.uuid4()
            started = now - timedelta(minutes=2)
            run_rows.append(
                (run_id, key, x["workspace_id"], provider, "incremental", "schedule", started - RUNS_EVERY, started,
                 "running", started, started, started, now - timedelta(seconds=5), None, 3, 120, None, 100)
            )  # fmt: skip
            last_id = run_id
        state = {
            "healthy": "success",
            "disabled": "success",
            "failing": "error",
            "syncing": "syncing",
            "reauth": "reauth_required",
        }[kind]
        total = counts.get(x["id"], 0)
        state_rows.append(
            (key, x["workspace_id"], provider, state, now - timedelta(hours=1), hour - timedelta(days=30),
             hour + RUNS_EVERY + timedelta(minutes=x["i"] % 60), now + timedelta(days=3 + x["i"] % 7),
             3 if kind == "failing" else 0, last_id,
             None if kind == "failing" and runs <= 3 else (last_finished - (3 * RUNS_EVERY if kind == "failing" else timedelta())),
             total, per_run, None if state != "error" else "fathom answered HTTP 503 (service unavailable)",
             now if kind == "reauth" else None, hour - timedelta(days=90), now)
        )  # fmt: skip
    await db.copy_records_to_table(
        "sync_runs",
        records=run_rows,
        columns=[
            "id", "integration_id", "workspace_id", "provider", "mode", "trigger", "window_start", "window_end",
            "status", "created_at", "published_at", "started_at", "last_progress_at", "finished_at", "pages",
            "calls_published", "error", "calls_created",
        ],
    )  # fmt: skip
    await db.copy_records_to_table(
        "sync_state",
        records=state_rows,
        columns=[
            "integration_id", "workspace_id", "provider", "status", "watermark", "cadence_anchor", "next_due_at",
            "next_reconcile_at", "consecutive_failures", "last_run_id", "last_synced_at", "items_synced_total",
            "items_synced_last_run", "last_error", "reauth_at", "created_at", "updated_at",
        ],
    )  # fmt: skip
    await db.execute("analyze sync_runs; analyze sync_state; analyze integrations; analyze messages")
    return len(run_rows)


# ---- 4. measuring ---------------------------------------------------------------------------------------
async def sign_in(url: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=30.0)
    page = await client.get("/login")
    found = CSRF_FIELD.search(page.text)
    if not found:
        raise RuntimeError(f"/login has no CSRF field: {page.status_code}")
    answer = await client.post("/login", data={"token": token, "_csrf_token": found.group(1), "next": "/"})
    if answer.status_code != 303 or answer.headers.get("location") != "/":
        raise RuntimeError(f"sign-in answered {answer.status_code}: {answer.text[:300]}")
    return client


class Backends:
    """The services' APIs as the console calls them, each with its admin token, for the ceilings."""

    def __init__(self, env: dict[str, str], procs: dict[str, ServiceProcess]) -> None:
        self.c = {
            name: httpx.AsyncClient(base_url=procs[name].url, headers=admin_headers(env, name), timeout=30.0)
            for name in ("gateway", "scheduler", "normalizer", "linker")
        }

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.c.values()))

    async def json(self, service: str, path: str, **params: Any) -> Any:
        r = await self.c[service].get(path, params=params or None)
        r.raise_for_status()
        return r.json()

    async def text(self, service: str, path: str) -> str:
        r = await self.c[service].get(path)
        return r.text

    # One function per page: the calls it makes (services/console/src/callstream/console/_app.py).
    async def overview(self) -> int:
        # The scheduler's summary (with the health of the rows that may need a person) beside the
        # services' readiness and the DLQ gauge.
        summary, *_ = await asyncio.gather(
            self.json("scheduler", "/v1/sync-summary", attention_limit=ATTENTION_ROWS),
            *(self.text(s, "/health/ready") for s in ("gateway", "scheduler", "normalizer", "linker")),
            self.text("normalizer", "/metrics"),
        )
        return len(summary["attention"])

    async def integrations(self) -> int:
        # A page of the gateway's list, the states of its rows, the health of its failing rows.
        page = await self.json("gateway", "/v1/integrations", limit=INTEGRATIONS_PER_PAGE)
        states = await self.json("scheduler", "/v1/sync-state", integration_id=[i["id"] for i in page])
        await self._healths([s["integration_id"] for s in states if s["status"] == "error"])
        return len(page)

    async def failing(self) -> int:
        # A page of the scheduler's states so filtered, the health of its rows (the word may change).
        states = await self.json(
            "scheduler", "/v1/sync-state", status="error", integration_status="active", limit=INTEGRATIONS_PER_PAGE
        )
        await self._healths([s["integration_id"] for s in states])
        return len(states)

    async def messages(self) -> int:
        page = await self.json("linker", "/v1/messages", limit=MESSAGES_PER_PAGE)
        return len(page["items"])

    async def _healths(self, ids: list[str]) -> None:
        batches = [ids[k : k + HEALTH_BATCH] for k in range(0, len(ids), HEALTH_BATCH)]
        await asyncio.gather(*(self.json("scheduler", "/v1/health", integration_id=b) for b in batches))


async def timed(
    call: Callable[[], Awaitable[int]], n: int, concurrency: int, latencies: list[float], errors: list[str]
) -> int:
    """``n`` calls by ``concurrency`` workers one after another; each call's latency in ms."""
    queue = list(range(n))
    size = 0

    async def worker() -> None:
        nonlocal size
        while queue:
            queue.pop()
            started = time.perf_counter()
            try:
                size = await call()
            except Exception as exc:  # counted as failed, the first few kept
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return size


PROBLEM = 'class="flash bad"'  # how a console page says a service failed it


def page_call(client: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[int]]:
    async def call() -> int:
        r = await client.get(path)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:200]}")
        problem = r.text.find(PROBLEM)  # a backend failed: the page answers 200 and shows less
        if problem >= 0:
            raise RuntimeError(f"GET {path} named a problem: {r.text[problem : problem + 240]}")
        return len(r.content)

    return call


async def measure_pages(
    console: httpx.AsyncClient, backends: Backends, requests: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    ceilings = {
        "/": backends.overview,
        "/integrations": backends.integrations,
        FAILING: backends.failing,
        "/messages": backends.messages,
    }
    lat: dict[str, dict[str, list[float]]] = {p: {"page": [], "ceiling": []} for p in PAGES}
    errors: dict[str, dict[str, list[str]]] = {p: {"page": [], "ceiling": []} for p in PAGES}
    sizes: dict[str, dict[str, int]] = {p: {"page": 0, "ceiling": 0} for p in PAGES}
    warm = min(2 * concurrency, requests)
    for path in PAGES:  # warm-up: connections, template compilation, the database's caches
        await timed(page_call(console, path), warm, concurrency, [], [])
        await timed(ceilings[path], warm, concurrency, [], [])
    per_round = max(requests // rounds, 1)
    for k in range(rounds):  # alternating, so a noisy neighbour on the shared cores hits both alike
        for path in PAGES:
            print(f"round {k + 1}/{rounds}: {path}", file=sys.stderr, flush=True)
            sizes[path]["page"] = await timed(
                page_call(console, path), per_round, concurrency, lat[path]["page"], errors[path]["page"]
            )
            sizes[path]["ceiling"] = await timed(
                ceilings[path], per_round, concurrency, lat[path]["ceiling"], errors[path]["ceiling"]
            )
    out: dict[str, Any] = {}
    for path in PAGES:
        page = summary(lat[path]["page"], per_round * rounds - len(lat[path]["page"]), sizes[path]["page"])
        ceiling = summary(lat[path]["ceiling"], per_round * rounds - len(lat[path]["ceiling"]), 0)
        ceiling.pop("bytes")
        ceiling["items"] = sizes[path]["ceiling"]
        p95, c95 = page["p95_ms"], ceiling["p95_ms"]
        out[path] = {
            **page,
            "target_p95_ms": TARGET_MS,
            "ok": p95 is not None and p95 <= TARGET_MS and page["failed"] == 0,
            "ceiling": ceiling,
            "ratio_p95_to_ceiling": round(p95 / c95, 2) if p95 and c95 else None,
            "ratio_p50_to_ceiling": round(page["p50_ms"] / ceiling["p50_ms"], 2)
            if page["p50_ms"] and ceiling["p50_ms"]
            else None,
            "errors": errors[path]["page"] + errors[path]["ceiling"],
        }
    return out


# ---- the run ------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "console",
        "integrations": args.integrations,
        "workspaces": (args.integrations + 1) // 2,
        "messages": args.messages,
        "runs_per_integration": args.runs,
        "concurrency": args.concurrency,
        "target_p95_ms": TARGET_MS,
    }
    # SIGTERM (bench/run stopped, a kill): the servers and processes are stopped by the finally below.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    # The backends first; the scheduler once its tables hold a month (its due loop then starts nothing).
    chaos = Chaos(base, services=("gateway", "normalizer", "linker"))
    try:
        started = time.perf_counter()
        await chaos.start()
        env = chaos.env
        db = await asyncpg.connect(env["CALLSTREAM_DATABASE_URL"])
        nc = await nats.connect(chaos.nats.url)  # the operator: raw calls come from the gateway otherwise
        gateway = httpx.AsyncClient(base_url=chaos.procs["gateway"].url, headers=admin_headers(env, "gateway"))
        backends: Backends | None = None
        console: httpx.AsyncClient | None = None
        try:
            integrations = await create_integrations(gateway, db, args.integrations)
            result["integration_kinds"] = {
                k: sum(1 for x in integrations if x["kind"] == k) for k in sorted({x["kind"] for x in integrations})
            }
            t = time.perf_counter()
            counts = await publish_messages(nc.jetstream(timeout=30.0), integrations, args.messages)
            await wait_stored(db, args.messages, args.timeout)
            result["store_seconds"] = round(time.perf_counter() - t, 1)
            result["runs_written"] = await seed_scheduler(db, integrations, counts, args.runs)

            chaos.procs["scheduler"] = ServiceProcess.named("scheduler", env, base / "logs").start()
            await asyncio.to_thread(chaos.procs["scheduler"].wait_ready, 60)
            token = "cs_console_admin_" + secrets.token_urlsafe(32)
            urls = {by_name(n).url_env: p.url for n, p in chaos.procs.items()}
            cenv = {**console_env({**env, **urls}), CONSOLE_ADMIN_TOKEN_ENV: token}
            chaos.procs["console"] = ServiceProcess.named("console", cenv, base / "logs").start()
            await asyncio.to_thread(chaos.procs["console"].wait_ready, 60)
            result["setup_seconds"] = round(time.perf_counter() - started, 1)

            console = await sign_in(chaos.procs["console"].url, token)
            backends = Backends(env, chaos.procs)
            t = time.perf_counter()
            result["pages"] = await measure_pages(console, backends, args.requests, args.concurrency, args.rounds)
            result["measure_seconds"] = round(time.perf_counter() - t, 1)
            result["ok"] = all(p["ok"] for p in result["pages"].values())
            return result
        finally:
            if console is not None:
                await console.aclose()
            if backends is not None:
                await backends.aclose()
            await gateway.aclose()
            await nc.close()
            await db.close()
    finally:
        await chaos.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=720, help="finished runs per integration (hourly, 30 days)")
    parser.add_argument("--requests", type=int, default=400, help="per page, and as many for its ceiling")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0, help="for storing the messages")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (printed where)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args()
    if args.smoke:
        args.integrations, args.messages, args.runs, args.requests, args.rounds = 20, 200, 24, 8, 1
    base = Path(tempfile.mkdtemp(prefix="callstream-bench-console-"))
    try:
        result = asyncio.run(run(args, base))
    except Exception as exc:  # one JSON object whatever happens, as bench/run reads it
        traceback.print_exc()
        result = {"benchmark": "console", "error": f"{type(exc).__name__}: {exc}"[:2000], "ok": False}
    finally:
        if args.keep_logs:
            print(f"logs kept in {base / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if args.smoke:
        result["smoke"] = True
    print(json.dumps(result))
    # A smoke measures nothing, but every page and every ceiling must have answered in full.
    answered = "pages" in result and all(
        page["failed"] == 0 and page["ceiling"]["failed"] == 0 for page in result["pages"].values()
    )
    return 0 if result.get("ok") or (args.smoke and answered) else 1


if __name__ == "__main__":
    sys.exit(main())
