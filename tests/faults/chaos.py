"""A Fathom-like sender posting N meetings while processes and servers are killed at random moments.

Shared by ``tests/faults`` (N = 2,000, in CI) and ``bench/chaos`` (N = 20,000, prints JSON). The
sender behaves like Svix: any non-2xx answer or a timeout is retried, on a compressed schedule, with
the same ``webhook-id`` and a fresh timestamp and signature.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from standardwebhooks import Webhook

from callstream.devstack import (
    EmbeddedPostgres,
    NatsServer,
    ServiceProcess,
    base_service_env,
    free_port,
    setup_services,
)

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "contracts" / "tests" / "unit" / "examples" / "fathom_webhook_meeting.json"
)
RETRY_SCHEDULE = (0.05, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0)  # Svix's immediately, 5 s, 5 min, ... compressed
WORKSPACE = "chaos"


@dataclass
class ChaosReport:
    sent: int = 0
    acked: int = 0
    attempts: int = 0
    non_2xx: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    events: int = 0
    created_events: int = 0
    duplicate_events: int = 0
    missing_events: int = 0
    dlq: int = 0
    unlinkable: int = 0
    faults: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["non_2xx"] = {str(k): v for k, v in sorted(self.non_2xx.items())}
        return d


class Chaos:
    """Owns the servers and processes of one run."""

    def __init__(self, base: Path, *, seed: int = 7) -> None:
        self.base = base
        self.random = random.Random(seed)
        self.pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=True)
        self.nats = NatsServer(base / "js", port=free_port(), name="chaos-nats")
        self.procs: dict[str, ServiceProcess] = {}
        self.env: dict[str, str] = {}

    async def start(self) -> None:
        self.pg.start()
        self.nats.start()
        conn = await asyncpg.connect(self.pg.dsn())
        try:
            await conn.execute("create database callstream")
        finally:
            await conn.close()
        self.env = base_service_env(self.pg.dsn("callstream"), self.nats.url)
        await asyncio.to_thread(setup_services, self.env)
        for name in ("gateway", "normalizer", "linker"):
            self.procs[name] = ServiceProcess.named(name, self.env, self.base / "logs").start()
        for proc in self.procs.values():
            await asyncio.to_thread(proc.wait_ready, 60)

    async def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            await asyncio.to_thread(proc.stop)
        self.nats.stop()
        self.pg.stop("immediate")

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['CALLSTREAM_ADMIN_TOKEN']}"}

    async def integration(self) -> tuple[str, str]:
        return await create_integration(self.procs["gateway"].url, self._admin())

    # ---- faults ------------------------------------------------------------------------------
    async def _restart(self, name: str, down_seconds: float) -> None:
        proc = self.procs[name]
        proc.kill()
        await asyncio.sleep(down_seconds)
        proc.start()  # same port: the sender keeps posting to the same address
        await asyncio.to_thread(proc.wait_ready, 60)

    async def _restart_nats(self, down_seconds: float) -> None:
        self.nats.kill()
        await asyncio.sleep(down_seconds)
        self.nats.start()

    async def _restart_postgres(self, down_seconds: float) -> None:
        await asyncio.to_thread(self.pg.stop, "immediate")
        await asyncio.sleep(down_seconds)
        await asyncio.to_thread(self.pg.start)

    async def run_faults(self, duration: float, report: ChaosReport) -> None:
        """Kill the normalizer twice, the gateway once, restart NATS and PostgreSQL once each, at
        random moments spread over ``duration`` seconds (one fault at a time)."""
        plan = ["normalizer", "normalizer", "gateway", "nats", "postgres"]
        self.random.shuffle(plan)
        slots = sorted(self.random.uniform(0.05, 0.9) * duration for _ in plan)
        started = time.monotonic()
        for at, fault in zip(slots, plan, strict=True):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            down = self.random.uniform(0.2, 1.5)
            report.faults.append(f"{time.monotonic() - started:.1f}s {fault} down {down:.1f}s")
            if fault == "nats":
                await self._restart_nats(down)
            elif fault == "postgres":
                await self._restart_postgres(down)
            else:
                await self._restart(fault, down)


async def create_integration(gateway_url: str, admin_headers: dict[str, str]) -> tuple[str, str]:
    """A Fathom integration of the chaos workspace with a fresh webhook secret: (id, secret)."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with httpx.AsyncClient(base_url=gateway_url, headers=admin_headers) as client:
        r = await client.post(
            "/v1/integrations",
            json={
                "workspace_id": WORKSPACE,
                "provider": "fathom",
                "credentials": {"api_key": "k"},
                "webhook_secret": secret,
            },
        )
    r.raise_for_status()
    return r.json()["id"], secret


async def send_meetings(
    gateway_url: str | Sequence[str],
    integration_id: str,
    secret: str,
    n: int,
    report: ChaosReport,
    *,
    concurrency: int = 32,
    first_id: int = 900_000_000,
    retry_schedule: Sequence[float] = RETRY_SCHEDULE,
) -> set[int]:
    """Post ``n`` unique meetings like Svix; returns the recording ids whose delivery ended in 2xx.

    Given several gateway replicas the sender also plays the load balancer in front of them: the
    meetings are spread over the replicas in turn, and every retry (after a connection error, a
    timeout or a non-2xx answer) goes to the next replica, with the same ``webhook-id``."""
    urls = [gateway_url] if isinstance(gateway_url, str) else list(gateway_url)
    template = json.loads(EXAMPLE.read_text())
    webhook = Webhook(secret)
    acked: set[int] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(first_id + i)
    limits = httpx.Limits(max_connections=concurrency * len(urls), max_keepalive_connections=concurrency * len(urls))

    async def deliver(client: httpx.AsyncClient, recording_id: int) -> None:
        meeting = dict(template, recording_id=recording_id, share_url=f"https://fathom.video/share/c{recording_id}")
        body = json.dumps(meeting).encode()
        webhook_id = f"msg_chaos_{recording_id}"
        for attempt, delay in enumerate((0.0, *retry_schedule)):
            await asyncio.sleep(delay)
            url = urls[(recording_id + attempt) % len(urls)]
            now = datetime.now(tz=UTC)
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
                "content-type": "application/json",
            }
            report.attempts += 1
            try:
                r = await client.post(f"{url}/v1/webhooks/fathom/{integration_id}", content=body, headers=headers)
            except httpx.HTTPError:
                report.timeouts += 1
                continue
            if 200 <= r.status_code < 300:
                acked.add(recording_id)
                return
            report.non_2xx[r.status_code] += 1

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            recording_id = queue.get_nowait()
            await deliver(client, recording_id)

    async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    report.sent = n
    report.acked = len(acked)
    return acked


def delivered_so_far(report: ChaosReport) -> int:
    """Deliveries answered 2xx while the sender still runs (every attempt ends in exactly one of
    2xx, a non-2xx answer or an error; the ones in flight, at most ``concurrency``, count early)."""
    return report.attempts - report.timeouts - sum(report.non_2xx.values())


async def count_stored(dsn: str, acked: set[int], report: ChaosReport, *, settle_seconds: float = 60.0) -> None:
    """Wait until every acked meeting is stored and the outbox is empty (or ``settle_seconds``
    pass), then count stored, doubled and lost meetings."""
    deadline = time.monotonic() + settle_seconds
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            stored = await conn.fetchval(
                "select count(*) from messages where workspace_id = $1 and source = 'fathom'", WORKSPACE
            )
            pending = await conn.fetchval("select count(*) from outbox where published_at is null")
            if (stored >= len(acked) and pending == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        rows = await conn.fetch(
            "select external_id, count(*) as n from messages where workspace_id = $1 group by external_id", WORKSPACE
        )
    finally:
        await conn.close()
    counts = {int(r["external_id"]): r["n"] for r in rows}
    report.stored = len(counts)
    report.duplicates = sum(n - 1 for n in counts.values())
    report.lost = len(acked - counts.keys())


@dataclass
class EventTally:
    """``MessageUpserted`` events as one subscriber receives them. Each stream message counts once:
    a redelivery of the same stream sequence is the consumer's at-least-once delivery, not a
    second event; a second ``created`` for one meeting under another sequence is a double."""

    sequences: set[int] = field(default_factory=set)
    created: Counter[str] = field(default_factory=Counter)

    def add(self, stream_sequence: int, data: bytes) -> None:
        if stream_sequence in self.sequences:
            return
        self.sequences.add(stream_sequence)
        event = json.loads(data)
        if event["change"] == "created":
            self.created[event["external_id"]] += 1

    def count_into(self, acked: set[int], report: ChaosReport) -> None:
        report.events = len(self.sequences)
        report.created_events = sum(self.created.values())
        report.duplicate_events = sum(n - 1 for n in self.created.values() if n > 1)
        report.missing_events = len({str(i) for i in acked} - self.created.keys())


async def count_dlq(js: nats.js.JetStreamContext, report: ChaosReport) -> None:
    try:
        report.dlq = (await js.stream_info("DLQ")).state.messages
    except nats.js.errors.NotFoundError:
        report.dlq = 0


async def count_unlinkable(dsn: str, linker_url: str, headers: dict[str, str], report: ChaosReport) -> None:
    """The linker resolves every stored message to an allowed https link."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = [str(r["id"]) for r in await conn.fetch("select id from messages where workspace_id = $1", WORKSPACE)]
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=linker_url, headers=headers, timeout=30) as client:
        for i in range(0, len(ids), 1000):
            r = await client.post("/v1/links/resolve", json={"message_ids": ids[i : i + 1000]})
            r.raise_for_status()
            links = r.json()["links"]
            report.unlinkable += sum(1 for mid in ids[i : i + 1000] if not (links.get(mid) or {}).get("url"))


async def verify(chaos: Chaos, acked: set[int], report: ChaosReport, *, settle_seconds: float = 60.0) -> None:
    """Wait until every acked meeting is stored (or ``settle_seconds`` pass), then count."""
    dsn = chaos.pg.dsn("callstream")
    await count_stored(dsn, acked, report, settle_seconds=settle_seconds)

    nc = await nats.connect(chaos.nats.url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("messages.upserted.fathom", durable="chaos-subscriber", stream="MESSAGES")
        tally = EventTally()
        while True:
            try:
                batch = await sub.fetch(500, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                break
            for msg in batch:
                tally.add(msg.metadata.sequence.stream, msg.data)
                await msg.ack()
        tally.count_into(acked, report)
        await count_dlq(js, report)
    finally:
        await nc.close()

    await count_unlinkable(dsn, chaos.procs["linker"].url, chaos._admin(), report)


async def run(base: Path, n: int, *, seed: int = 7, fault_window: float | None = None) -> ChaosReport:
    report = ChaosReport()
    chaos = Chaos(base, seed=seed)
    started = time.monotonic()
    await chaos.start()
    try:
        integration_id, secret = await chaos.integration()
        # Faults land while traffic flows: the window is a guess at the send time, the sender's
        # retries cover whatever is down when it asks.
        window = fault_window if fault_window is not None else max(8.0, n / 150)
        sender = asyncio.create_task(send_meetings(chaos.procs["gateway"].url, integration_id, secret, n, report))
        await chaos.run_faults(window, report)
        acked = await sender
        await verify(chaos, acked, report)
    finally:
        await chaos.stop()
    report.wall_seconds = round(time.monotonic() - started, 1)
    return report
