"""A Fathom-like sender posting N meetings while processes and servers are killed at random moments.

Shared by ``tests/faults`` (N = 2,000, in CI) and ``bench/chaos`` (N = 20,000, prints JSON). The
sender behaves like Svix: any non-2xx answer or a timeout is retried, on a compressed schedule, with
the same ``webhook-id`` and a fresh timestamp and signature (Svix documents every non-2xx answer,
4xx included, as a failure to retry: https://docs.svix.com/retries).

Besides the ordinary meetings a run can carry ``Extras`` (issue #17): large meetings among the N
(stored byte for byte), poison raw calls published straight to ``calls.raw.fathom`` as an internal
bug or a replay would (every one must land in the DLQ, none stored), poison webhooks (every answer
400, never accepted), and integrations whose provider refuses connections, each asked for a
backfill at the start, so their pull runs fail and wait throughout the run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
from standardwebhooks import Webhook

from callstream.contracts import DLQ, NORMALIZER_CONSUMER, DeadLetter, RawCall, dlq_subject
from callstream.devstack import (
    EmbeddedPostgres,
    NatsServer,
    ServiceProcess,
    admin_headers,
    base_service_env,
    free_port,
    setup_services,
)

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "contracts" / "tests" / "unit" / "examples" / "fathom_webhook_meeting.json"
)
RETRY_SCHEDULE = (0.05, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0)  # Svix's immediately, 5 s, 5 min, ... compressed
WORKSPACE = "chaos"
POISON_WORKSPACE = "chaos-poison"
DEAD_WORKSPACE = "chaos-dead"
MIB = 1024 * 1024
SEND_TIMEOUT = 5.0
LARGE_SEND_TIMEOUT = 15.0  # Svix waits 15 s for an answer; a 3 MiB body needs more than the 5 s above
POISON_PUBLISH_GIVE_UP = 120.0  # seconds of retrying one poison publish through NATS restarts
# Speakers and text with escapes and non-ASCII, so that "byte-identical" means something.
_SPEAKERS = ("Marisol Etxeberria", "Kwabena Ashworth-Lindqvist", "Zoë Ångström", "李 小龍")


@dataclass(frozen=True)
class Extras:
    """What a run sends besides ordinary meetings (issue #17's chaos run)."""

    large: int = 0  # meetings of ``large_mib`` MiB, among the N, spread evenly over the send
    large_mib: int = 3
    poison: int = 0  # raw calls the normalizer can never map, published straight to calls.raw.fathom
    poison_webhooks: int = 0  # signed webhooks the gateway must refuse with 400
    dead: int = 0  # Fathom/Gong integrations whose provider refuses connections, syncing throughout


NO_EXTRAS = Extras()
BENCH_EXTRAS = Extras(large=20, poison=20, poison_webhooks=4, dead=8)


def _signed(webhook: Webhook, webhook_id: str, body: bytes) -> dict[str, str]:
    """Headers of one attempt as Svix sends them: the same webhook-id, a fresh timestamp and signature."""
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
        "content-type": "application/json",
    }


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
    send_seconds: float = 0.0  # from the first post until the sender's last delivery ended
    settle_seconds: float = 0.0  # from then until every acked meeting was stored and the outbox empty
    # extras (zero when a run has none)
    large_sent: int = 0
    large_stored: int = 0
    large_identical: int = 0  # stored content's SHA-256 equal to the transcript sent
    poison_published: int = 0
    poison_dead_lettered: int = 0  # distinct poison raw calls found on dlq.normalizer
    poison_stored: int = 0
    poison_webhooks: int = 0
    poison_webhooks_400: int = 0  # poison webhooks every answer of which was 400
    poison_webhooks_accepted: int = 0
    poison_webhook_attempts: int = 0
    poison_webhook_answers: Counter[int] = field(default_factory=Counter)
    dlq_other: int = 0  # DLQ entries that are not one of the poison raw calls
    dead_integrations: int = 0
    dead_syncs_requested: int = 0  # backfills answered 202 (or 409: the due loop had asked first)
    dead_runs: list[dict[str, Any]] = field(default_factory=list)
    dead_runs_released: int = 0  # the gateway's releases of waiting runs (since its last restart)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["non_2xx"] = {str(k): v for k, v in sorted(self.non_2xx.items())}
        d["poison_webhook_answers"] = {str(k): v for k, v in sorted(self.poison_webhook_answers.items())}
        return d


class Chaos:
    """Owns the servers and processes of one run."""

    def __init__(
        self, base: Path, *, seed: int = 7, services: Sequence[str] = ("gateway", "normalizer", "linker")
    ) -> None:
        self.base = base
        self.random = random.Random(seed)
        self.services = tuple(services)
        self.pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=True)
        # max_payload as in every deployment (NATS_MAX_PAYLOAD): large meetings and their dead letters fit
        self.nats = NatsServer(base / "js", port=free_port(), name="chaos-nats")
        self.procs: dict[str, ServiceProcess] = {}
        self.env: dict[str, str] = {}
        # A loopback port bound but never listening: every connection to it is refused at once,
        # what a provider that is down looks like to the pull workers.
        self._refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refused.bind(("127.0.0.1", 0))
        self.dead_port: int = self._refused.getsockname()[1]

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
        for name in self.services:
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
        self._refused.close()

    def _admin(self, service: str) -> dict[str, str]:
        return admin_headers(self.env, service)

    async def integration(self) -> tuple[str, str]:
        return await create_integration(self.procs["gateway"].url, self._admin("gateway"))

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
    large_ids: frozenset[int] = frozenset(),
    large_mib: int = 3,
) -> set[int]:
    """Post ``n`` unique meetings like Svix; returns the recording ids whose delivery ended in 2xx.
    The meetings in ``large_ids`` carry a transcript of ``large_mib`` MiB (``large_meeting``).

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
        timeout = SEND_TIMEOUT
        if recording_id in large_ids:
            # built off the event loop: a 3 MiB transcript takes a while and the other senders go on
            body = await asyncio.to_thread(large_meeting_body, template, recording_id, large_mib)
            timeout = LARGE_SEND_TIMEOUT
        else:
            body = json.dumps(meeting_of(template, recording_id)).encode()
        webhook_id = f"msg_chaos_{recording_id}"
        for attempt, delay in enumerate((0.0, *retry_schedule)):
            await asyncio.sleep(delay)
            url = urls[(recording_id + attempt) % len(urls)]
            headers = _signed(webhook, webhook_id, body)
            report.attempts += 1
            try:
                r = await client.post(
                    f"{url}/v1/webhooks/fathom/{integration_id}", content=body, headers=headers, timeout=timeout
                )
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

    async with httpx.AsyncClient(timeout=SEND_TIMEOUT, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    report.sent = n
    report.acked = len(acked)
    return acked


def meeting_of(template: dict[str, Any], recording_id: int) -> dict[str, Any]:
    return dict(template, recording_id=recording_id, share_url=f"https://fathom.video/share/c{recording_id}")


def large_transcript(size: int, seed: int) -> list[dict[str, Any]]:
    """A Fathom transcript whose JSON is at least ``size`` bytes (a three-hour workshop and more),
    the same for the same ``seed``."""
    items: list[dict[str, Any]] = []
    total = i = 0
    while total < size:
        text = f'Point {seed}-{i}: the "pilot" covers région EU\\west, ünïcødé ✓ and tabs\tinside, line {i}.'
        item = {
            "speaker": {"display_name": _SPEAKERS[i % len(_SPEAKERS)], "matched_calendar_invitee_email": None},
            "text": text,
            "timestamp": f"{i // 3600 % 100:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
        }
        items.append(item)
        total += len(json.dumps(item, ensure_ascii=False).encode())
        i += 1
    return items


def large_meeting_body(template: dict[str, Any], recording_id: int, mib: int) -> bytes:
    meeting = meeting_of(template, recording_id)
    meeting["transcript"] = large_transcript(mib * MIB, recording_id)
    return json.dumps(meeting, ensure_ascii=False).encode()


def large_content_sha256(recording_id: int, mib: int) -> str:
    """What the normalizer stores as a large meeting's content (``speaker: text`` per line), hashed."""
    lines = (f"{t['speaker']['display_name']}: {t['text']}" for t in large_transcript(mib * MIB, recording_id))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def spread_ids(n: int, count: int, first_id: int) -> frozenset[int]:
    """``count`` recording ids spread evenly over the ``n`` sent from ``first_id`` (mid-segment)."""
    count = min(count, n)
    return frozenset(first_id + (i * n) // count + n // (2 * count) for i in range(count)) if count else frozenset()


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


# ---- poison -------------------------------------------------------------------------------------
def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def poison_payload(kind: str, recording_id: int, template: dict[str, Any]) -> bytes:
    """Provider bytes the normalizer can never map (and the gateway refuses with 400)."""
    if kind == "not_an_object":
        return b"[1, 2, 3]"
    if kind == "recording_id_text":
        return json.dumps(meeting_of(template, recording_id) | {"recording_id": str(recording_id)}).encode()
    if kind == "nested_200":  # decodable, deeper than the limit of 64
        return b'{"recording_id": %d, "title": "deep", "extra": %s}' % (recording_id, _nested(200))
    if kind == "nested_5000":  # too deep for any decoder: the envelope's own decode gives up
        return b'{"recording_id": %d, "title": "deep", "extra": %s}' % (recording_id, _nested(5_000))
    raise ValueError(kind)


async def _quiet(_: Exception) -> None:
    pass


POISON_KINDS = ("not_an_object", "recording_id_text", "nested_200", "nested_5000")


async def publish_poison(
    nats_url: str, count: int, window: float, report: ChaosReport, *, first_id: int = 800_000_000
) -> dict[str, str]:
    """Publish ``count`` poison raw calls straight to ``calls.raw.fathom`` (as an internal bug or a
    replay would), spread over ``window`` seconds, each retried through NATS restarts with one
    ``Nats-Msg-Id``. Returns {Nats-Msg-Id: kind} of the ones the stream acknowledged."""
    template = json.loads(EXAMPLE.read_text())
    published: dict[str, str] = {}
    if not count:
        return published
    nc = await nats.connect(
        nats_url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        error_cb=_quiet,  # NATS restarts on purpose here: no traceback on stderr for each
    )
    try:
        js = nc.jetstream(timeout=2.0)
        started = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, started + (i + 0.5) * window / count - time.monotonic()))
            kind = POISON_KINDS[i % len(POISON_KINDS)]
            recording_id = first_id + i
            msg_id = f"chaos-poison-{recording_id}"
            call = RawCall(
                event_id=msg_id,
                source="fathom",
                workspace_id=POISON_WORKSPACE,
                integration_id="chaos-poison",
                external_id=str(recording_id),
                origin="pull",
                received_at=datetime.now(UTC),
                payload=msgspec.Raw(poison_payload(kind, recording_id, template)),
            )
            data = msgspec.json.encode(call)
            give_up = time.monotonic() + POISON_PUBLISH_GIVE_UP
            while True:
                try:
                    await js.publish("calls.raw.fathom", data, headers={"Nats-Msg-Id": msg_id})
                    published[msg_id] = kind
                    break
                except Exception:  # NATS down or restarting: the same id again, deduplicated by the stream
                    if time.monotonic() > give_up:
                        break
                    await asyncio.sleep(0.25)
    finally:
        await nc.close()
    report.poison_published = len(published)
    return published


async def send_poison_webhooks(
    gateway_url: str,
    integration_id: str,
    secret: str,
    count: int,
    report: ChaosReport,
    *,
    first_id: int = 810_000_000,
    retry_schedule: Sequence[float] = RETRY_SCHEDULE,
) -> None:
    """Post ``count`` signed poison webhooks like Svix (which retries every non-2xx answer, 4xx
    included, until one carries ``webhook-delivery: abort-message``): each must be answered 400
    every time it reaches the gateway, and never accepted."""
    template = json.loads(EXAMPLE.read_text())
    webhook = Webhook(secret)

    async def deliver(client: httpx.AsyncClient, i: int) -> None:
        recording_id = first_id + i
        body = poison_payload(POISON_KINDS[i % len(POISON_KINDS)], recording_id, template)
        webhook_id = f"msg_chaos_poison_{recording_id}"
        answers: list[int] = []
        for delay in (0.0, *retry_schedule):
            await asyncio.sleep(delay)
            headers = _signed(webhook, webhook_id, body)
            report.poison_webhook_attempts += 1
            try:
                r = await client.post(
                    f"{gateway_url}/v1/webhooks/fathom/{integration_id}", content=body, headers=headers
                )
            except httpx.HTTPError:
                continue  # the gateway is down: no answer to count
            answers.append(r.status_code)
            report.poison_webhook_answers[r.status_code] += 1
            if 200 <= r.status_code < 300:
                report.poison_webhooks_accepted += 1
                return
            if r.headers.get("webhook-delivery") == "abort-message":  # Svix stops retrying here
                break
        # 503: the gateway could not look up the secret while PostgreSQL restarted; any other
        # answer than 400 (a 500 from an escaped error, a 202) is a failure
        refused = [a for a in answers if a != 503]
        if refused and all(a == 400 for a in refused):
            report.poison_webhooks_400 += 1

    async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as client:
        await asyncio.gather(*(deliver(client, i) for i in range(count)))
    report.poison_webhooks = count


async def count_poison(
    js: nats.js.JetStreamContext, dsn: str, published: dict[str, str], report: ChaosReport, *, settle_seconds: float
) -> None:
    """Wait until every published poison is on ``dlq.normalizer`` (or ``settle_seconds`` pass); count
    them, the DLQ entries that are not poison, and the poison stored as messages (must be none)."""
    own = dlq_subject(NORMALIZER_CONSUMER.durable)
    deadline = time.monotonic() + settle_seconds
    while True:
        found: set[str] = set()
        other = 0
        try:
            info = await js.stream_info(DLQ)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    raw = await js.get_msg(DLQ, seq)
                except nats.js.errors.NotFoundError:
                    continue
                letter = msgspec.json.decode(raw.data or b"", type=DeadLetter)
                msg_id = letter.headers.get("Nats-Msg-Id", "")
                if raw.subject == own and msg_id in published:
                    found.add(msg_id)
                else:
                    other += 1
        if len(found) >= len(published) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    report.poison_dead_lettered = len(found)
    report.dlq_other = other
    conn = await asyncpg.connect(dsn)
    try:
        report.poison_stored = await conn.fetchval(
            "select count(*) from messages where workspace_id = $1", POISON_WORKSPACE
        )
    finally:
        await conn.close()


async def count_large(dsn: str, large_ids: frozenset[int], mib: int, report: ChaosReport) -> None:
    """Large meetings stored, and stored byte for byte (the content's SHA-256, computed by PostgreSQL)."""
    report.large_sent = len(large_ids)
    if not large_ids:
        return
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select external_id, encode(sha256(convert_to(content, 'UTF8')), 'hex') as sha from messages"
            " where workspace_id = $1 and source = 'fathom' and external_id = any($2::text[])",
            WORKSPACE,
            [str(i) for i in large_ids],
        )
    finally:
        await conn.close()
    report.large_stored = len(rows)
    expected = {str(i): await asyncio.to_thread(large_content_sha256, i, mib) for i in large_ids}
    report.large_identical = sum(1 for r in rows if expected[r["external_id"]] == r["sha"])


# ---- dead providers ----------------------------------------------------------------------------
async def start_dead_syncs(chaos: Chaos, count: int, report: ChaosReport) -> list[tuple[str, str]]:
    """``count`` Fathom and Gong integrations (alternating) whose base_url is a refused loopback
    port, each asked for a backfill through the scheduler's API. Returns [(provider, id)]."""
    dead: list[tuple[str, str]] = []
    if not count:
        return dead
    base = f"http://127.0.0.1:{chaos.dead_port}"
    async with (
        httpx.AsyncClient(base_url=chaos.procs["gateway"].url, headers=chaos._admin("gateway"), timeout=10) as gateway,
        httpx.AsyncClient(
            base_url=chaos.procs["scheduler"].url, headers=chaos._admin("scheduler"), timeout=10
        ) as scheduler,
    ):
        for i in range(count):
            provider = ("fathom", "gong")[i % 2]
            body: dict[str, Any] = {"workspace_id": f"{DEAD_WORKSPACE}-{i}", "provider": provider}
            if provider == "fathom":
                body |= {"credentials": {"api_key": f"dead-key-{i}"}, "base_url": base + "/external/v1"}
            else:
                body |= {"credentials": {"access_key": f"dead-{i}", "access_key_secret": f"dead-{i}"}, "base_url": base}
            r = await gateway.post("/v1/integrations", json=body)
            r.raise_for_status()
            integration_id = str(r.json()["id"])
            dead.append((provider, integration_id))
            r = await scheduler.post(f"/v1/integrations/{integration_id}/syncs", json={"mode": "backfill"})
            # 409 run_active: the scheduler's due loop saw the new integration first; it syncs all the same
            if r.status_code == 202 or (r.status_code == 409 and r.json().get("error") == "run_active"):
                report.dead_syncs_requested += 1
    report.dead_integrations = len(dead)
    return dead


async def count_dead(chaos: Chaos, dead: list[tuple[str, str]], report: ChaosReport) -> None:
    """Each dead integration's runs as the scheduler sees them at the end, and the gateway's releases."""
    if not dead:
        return
    async with (
        httpx.AsyncClient(
            base_url=chaos.procs["scheduler"].url, headers=chaos._admin("scheduler"), timeout=10
        ) as scheduler,
        httpx.AsyncClient(base_url=chaos.procs["gateway"].url, timeout=10) as gateway,
    ):
        for provider, integration_id in dead:
            runs = (await scheduler.get(f"/v1/integrations/{integration_id}/syncs")).json()["items"]
            last = runs[0] if runs else {}
            report.dead_runs.append(
                {
                    "provider": provider,
                    "runs": len(runs),
                    "status": last.get("status"),
                    "waiting_for": last.get("waiting_for"),
                    "resume_after": last.get("resume_after"),
                    "finished": bool(last.get("finished_at")),
                    "error": (last.get("error") or "")[:120] or None,
                }
            )
        metrics = (await gateway.get("/metrics")).text
    report.dead_runs_released = int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("callstream_gateway_pull_runs_released_total{")
        )
    )


async def verify(
    chaos: Chaos,
    acked: set[int],
    report: ChaosReport,
    *,
    settle_seconds: float = 60.0,
    poison: dict[str, str] | None = None,
    large_ids: frozenset[int] = frozenset(),
    large_mib: int = 3,
    dead: Sequence[tuple[str, str]] = (),
) -> None:
    """Wait until every acked meeting is stored (or ``settle_seconds`` pass), then count."""
    dsn = chaos.pg.dsn("callstream")
    settling = time.monotonic()
    await count_stored(dsn, acked, report, settle_seconds=settle_seconds)
    report.settle_seconds = round(time.monotonic() - settling, 1)

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
        await count_poison(js, dsn, poison or {}, report, settle_seconds=settle_seconds)
        await count_dlq(js, report)
    finally:
        await nc.close()

    await count_unlinkable(dsn, chaos.procs["linker"].url, chaos._admin("linker"), report)
    await count_large(dsn, large_ids, large_mib, report)
    await count_dead(chaos, list(dead), report)


async def run(
    base: Path, n: int, *, seed: int = 7, fault_window: float | None = None, extras: Extras = NO_EXTRAS
) -> ChaosReport:
    report = ChaosReport()
    services = ("gateway", "normalizer", "linker", *(("scheduler",) if extras.dead else ()))
    chaos = Chaos(base, seed=seed, services=services)
    started = time.monotonic()
    await chaos.start()
    try:
        integration_id, secret = await chaos.integration()
        # the dead providers' runs start first and keep failing and waiting through the whole run
        dead = await start_dead_syncs(chaos, extras.dead, report)
        first_id = 900_000_000
        large_ids = spread_ids(n, extras.large, first_id)
        # Faults land while traffic flows: the window is a guess at the send time, the sender's
        # retries cover whatever is down when it asks.
        window = fault_window if fault_window is not None else max(8.0, n / 150)
        sending = time.monotonic()

        def sent(_: object) -> None:
            report.send_seconds = round(time.monotonic() - sending, 1)

        sender = asyncio.create_task(
            send_meetings(
                chaos.procs["gateway"].url,
                integration_id,
                secret,
                n,
                report,
                first_id=first_id,
                large_ids=large_ids,
                large_mib=extras.large_mib,
            )
        )
        sender.add_done_callback(sent)
        poisoner = asyncio.create_task(publish_poison(chaos.nats.url, extras.poison, window, report))
        poison_webhooks = asyncio.create_task(
            send_poison_webhooks(chaos.procs["gateway"].url, integration_id, secret, extras.poison_webhooks, report)
        )
        await chaos.run_faults(window, report)
        acked = await sender
        poison = await poisoner
        await poison_webhooks
        await verify(chaos, acked, report, poison=poison, large_ids=large_ids, large_mib=extras.large_mib, dead=dead)
    finally:
        await chaos.stop()
    report.wall_seconds = round(time.monotonic() - started, 1)
    return report
