"""Benchmark: backfills from the fake Fathom and Gong through the pull worker (and, when it is
there, the normalizer) into PostgreSQL.

    .venv/bin/python bench/backfill/run.py [--smoke] [--fathom 50000] [--gong 50000] [--no-normalizer]
        [--normalizers 1] [--store-concurrency K]

Everything runs in this invocation on one machine: an embedded NATS JetStream and PostgreSQL
(durable settings, migrated), each fake provider in a process of its own with its rate limits
off, the normalizer as its own process (``callstream-normalizer serve``; ``--normalizers N`` starts
N replicas on the one durable consumer, ``--store-concurrency K`` sets how many batches each writes
at once), and the gateway's ``PullWorker`` in this process (with an in-memory integration store: the credentials lookup is
not what is measured). The fakes build every call before they listen (``--warm``), so serving a
page costs them little and the figures are of our side, not of the fake's data generator. For each provider one ``backfill`` run is requested and timed:

* ``publish_calls_per_s``: calls stored in CALLS_RAW per second, from the request to its SyncFinished;
* ``e2e_calls_per_s``: calls per second from the request until every call is a row of ``messages``;
* ``requests_per_100_calls``: provider requests the run made (from the fake's log) per 100 calls.

The ceiling measured in the same run is JetStream's publish rate from this process for payloads of
the same size, published the way the worker does (a page in parallel, then wait). Prints one JSON
object; the target is >= 1,000 calls/s end to end for each provider. ``--smoke`` is a tiny run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats

from callstream.contracts import SYNC_EVENTS, Source, SyncFinished, SyncRequested, sync_requested_subject
from callstream.devstack import migrate_all
from callstream.devstack._servers import EmbeddedPostgres, NatsServer, free_port, service_nats_env, wait_port
from callstream.runtime import configure_logging, ensure_all

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARGET_E2E = 1000.0
WORKSPACE = "bench"


class MemoryStore:
    def __init__(self) -> None:
        self.accesses: dict[str, Any] = {}

    async def access(self, integration_id: str) -> Any:
        return self.accesses.get(integration_id)

    async def refreshed(self, integration_id: str, stale_access_token: str | None) -> Any:
        return self.accesses[integration_id]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group of a child we started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def migrate(dsn: str) -> None:
    await migrate_all(dsn)


def sample_meeting_bytes() -> int:
    """The size of one generated Fathom meeting with its transcript (the fakes' own generator)."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.fathom import FathomConfig, FathomState, build_meeting

    state = FathomState(FathomConfig(seed=1, meetings=1))
    return len(msgspec.json.encode(build_meeting(state.index, 0)))


async def publish_ceiling(js: Any, size: int, count: int) -> float:
    """JetStream publish rate from this process: pages of 100 in parallel, as the worker publishes."""
    await js.add_stream(name="BENCH_CEILING", subjects=["bench.ceiling"])
    payload = secrets.token_hex(size // 2).encode()
    started = time.perf_counter()
    for first in range(0, count, 100):
        await asyncio.gather(
            *(
                js.publish("bench.ceiling", payload, headers={"Nats-Msg-Id": f"c{i}"})
                for i in range(first, min(first + 100, count))
            )
        )
    elapsed = time.perf_counter() - started
    await js.delete_stream("BENCH_CEILING")
    return count / elapsed


async def wait_finished(js: Any, run_id: str, timeout: float) -> SyncFinished:
    sub = await js.subscribe("sync.events.>", stream=SYNC_EVENTS, ordered_consumer=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError):
                msg = await sub.next_msg(timeout=1.0)
                event = msgspec.json.decode(msg.data)
                if event.get("kind") == "finished" and event.get("run_id") == run_id:
                    return msgspec.json.decode(msg.data, type=SyncFinished)
        raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f}s")
    finally:
        await sub.unsubscribe()


async def wait_rows(pool: asyncpg.Pool, source: str, expected: int, timeout: float) -> float | None:
    """Seconds until ``messages`` holds ``expected`` rows of ``source``; None if it stalls."""
    last, last_change = -1, time.monotonic()
    while True:
        count = await pool.fetchval("select count(*) from messages where source = $1", source)
        now = time.monotonic()
        if count >= expected:
            return now
        if count != last:
            last, last_change = count, now
        if now - last_change > timeout:
            return None
        await asyncio.sleep(0.2)


async def bench_provider(
    js: Any, pool: asyncpg.Pool | None, store: MemoryStore, provider: Source, url: str, expected: int, timeout: float
) -> dict[str, Any]:
    from callstream.gateway._integrations import IntegrationAccess

    integration = str(uuid.uuid4())
    secrets_: dict[str, Any] = (
        {"api_key": "fathom-test-key"}
        if provider == "fathom"
        else {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"}
    )
    store.accesses[integration] = IntegrationAccess(
        id=integration,
        workspace_id=WORKSPACE,
        provider=provider,
        status="active",
        auth_kind="api_key" if provider == "fathom" else "basic",
        base_url=url,
        **secrets_,
    )
    run_id = str(uuid.uuid4())
    request = SyncRequested(
        run_id=run_id, integration_id=integration, workspace_id=WORKSPACE, provider=provider, mode="backfill"
    )
    waiter = asyncio.create_task(wait_finished(js, run_id, timeout))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await js.publish(
        sync_requested_subject(provider),
        msgspec.json.encode(request),
        headers={"Nats-Msg-Id": run_id},
    )
    finished = await waiter
    published_at = time.monotonic()
    result: dict[str, Any] = {
        "calls": finished.calls_published,
        "status": finished.status,
        "error": finished.error,
        "pages": finished.pages,
        "publish_seconds": round(published_at - started, 2),
        "publish_calls_per_s": round(finished.calls_published / (published_at - started), 1),
    }
    async with httpx.AsyncClient() as http:
        served = (await http.get(f"{url}/_fake/requests")).json()
    result["requests"] = len(served)
    result["requests_per_100_calls"] = round(100 * len(served) / max(1, finished.calls_published), 2)
    if pool is not None:
        done = await wait_rows(pool, provider, expected, timeout=60)
        if done is None:
            rows = await pool.fetchval("select count(*) from messages where source = $1", provider)
            result["e2e"] = f"stalled at {rows} of {expected} messages"
        else:
            result["e2e_seconds"] = round(done - started, 2)
            result["e2e_calls_per_s"] = round(expected / (done - started), 1)
    return result


async def main_async(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from callstream.gateway.pull import CheckpointStore, ProviderHosts, PullSettings, PullWorker

    pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=True)
    nats_server = NatsServer(base / "js", port=free_port(), name="bench-nats")
    procs: list[subprocess.Popen[bytes]] = []
    report: dict[str, Any] = {"bench": "backfill", "target_e2e_calls_per_s": TARGET_E2E, "cores": os.cpu_count()}
    pg.start()
    nats_server.start()
    try:
        admin = await asyncpg.connect(pg.dsn())
        await admin.execute("create database callstream")
        await admin.close()
        dsn = pg.dsn("callstream")
        await migrate(dsn)
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await ensure_all(js)
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            CALLSTREAM_DATABASE_URL=dsn,
            CALLSTREAM_NATS_URL=nats_server.url,
            CALLSTREAM_LOG_LEVEL="warning",
        )
        ports = {"fathom": free_port(), "gong": free_port()}
        counts = {"fathom": args.fathom, "gong": args.gong}
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "tests.fakes.fathom",
                    "--port",
                    str(ports["fathom"]),
                    "--seed",
                    "1",
                    "--meetings",
                    str(args.fathom),
                    "--no-limits",
                    "--warm",
                ],
                env,
                base / "fathom.log",
            )
        )
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "tests.fakes.gong",
                    "--port",
                    str(ports["gong"]),
                    "--seed",
                    "1",
                    "--calls",
                    str(args.gong),
                    "--no-limits",
                    "--warm",
                ],
                env,
                base / "gong.log",
            )
        )
        for port in ports.values():
            wait_port(port, timeout=600)  # --warm: every call is built (and encoded) before the fake listens
        pool: asyncpg.Pool | None = None
        report["normalizer"] = "not run (--no-normalizer)"
        if not args.no_normalizer:
            normalizer = BIN / "callstream-normalizer"
            if not normalizer.exists():
                report["normalizer"] = "not installed"
            else:
                nports = [free_port() for _ in range(args.normalizers)]
                concurrency = (
                    {"CALLSTREAM_NORMALIZER_STORE_CONCURRENCY": str(args.store_concurrency)}
                    if args.store_concurrency
                    else {}
                )
                for i, nport in enumerate(nports):
                    procs.append(
                        start(
                            [str(normalizer), "serve"],
                            # its own identity and permissions, as deployed
                            service_nats_env(
                                "normalizer", dict(env, CALLSTREAM_NORMALIZER_PORT=str(nport), **concurrency)
                            ),
                            base / f"normalizer-{i}.log",
                        )
                    )
                try:
                    for nport in nports:
                        wait_port(nport, timeout=60)
                    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
                    count = "one process" if args.normalizers == 1 else f"{args.normalizers} processes"
                    report["normalizer"] = f"ran (callstream-normalizer serve, {count})"
                    report["store_concurrency"] = args.store_concurrency or "the service's default"
                except TimeoutError:
                    report["normalizer"] = (
                        "did not start; see its log: " + (base / "normalizer-0.log").read_text()[-400:]
                    )
        size = sample_meeting_bytes()
        report["ceiling"] = {
            "jetstream_publish_msgs_per_s": round(await publish_ceiling(js, size, 2000 if args.smoke else 20_000), 1),
            "payload_bytes": size,
        }
        settings = PullSettings(CALLSTREAM_GATEWAY_PULL_LIMITS_ENABLED=False)  # type: ignore[call-arg]
        store = MemoryStore()
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:
            checkpoints = await CheckpointStore.open(js, "gateway_pull_checkpoints", ttl_seconds=3600)
            worker = PullWorker(
                js=js,
                store=store,
                http=http,
                checkpoints=checkpoints,
                settings=settings,
                hosts=ProviderHosts("http://unused", "http://unused"),
            )
            task = asyncio.create_task(worker.serve())
            try:
                providers: tuple[Source, ...] = ("fathom", "gong")
                for provider in providers:
                    url = f"http://127.0.0.1:{ports[provider]}"
                    report[provider] = await bench_provider(
                        js, pool, store, provider, url, counts[provider], timeout=args.timeout
                    )
            finally:
                worker.stopping.set()
                await asyncio.wait_for(task, 30)
        ceiling = report["ceiling"]["jetstream_publish_msgs_per_s"]
        for provider in ("fathom", "gong"):
            r = report[provider]
            r["publish_vs_ceiling"] = round(r["publish_calls_per_s"] / ceiling, 3)
        e2e = [report[p].get("e2e_calls_per_s") for p in ("fathom", "gong")]
        report["target_met"] = all(v is not None and v >= TARGET_E2E for v in e2e) if pool is not None else None
        if pool is not None:
            await pool.close()
        await nc.close()
    finally:
        for proc in procs:
            stop(proc)
        nats_server.stop()
        pg.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="300 calls per provider: a quick check for CI")
    parser.add_argument("--fathom", type=int, default=50_000)
    parser.add_argument("--gong", type=int, default=50_000)
    parser.add_argument("--no-normalizer", action="store_true", help="measure the publish into CALLS_RAW only")
    parser.add_argument(
        "--normalizers", type=int, default=1, help="normalizer processes (replicas on the one durable consumer)"
    )
    parser.add_argument("--store-concurrency", type=int, default=0, help="batches each normalizer writes at once")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the servers' files and logs")
    args = parser.parse_args()
    if args.smoke:
        args.fathom, args.gong, args.timeout = 300, 300, 300.0
    configure_logging("bench-backfill", "warning")  # one line per page would cost as much as the page
    base = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        report = asyncio.run(main_async(args, base))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
