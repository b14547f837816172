"""Normalizer drain benchmark: N raw calls (20 KB transcripts, 60 % Fathom / 40 % Gong) pre-loaded
in CALLS_RAW, drained by a real ``callstream-normalizer serve`` process into committed messages.

The ceiling is measured in the same run on the same servers: plain asyncpg ``executemany`` upserts
of the equivalent message rows (same values, mapped by the same pure mapper, mapping time not
counted) in batches of 100 into a fresh ``messages`` table. Prints one JSON object.

    .venv/bin/python bench/normalizer/bench_normalizer.py [--calls 50000] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import nats

from callstream.contracts import RawCall
from callstream.devstack import migrate_all
from callstream.devstack._servers import EmbeddedPostgres, NatsServer, free_port, service_nats_env, wait_port
from callstream.normalizer._mapping import map_raw_call
from callstream.runtime import ensure_all

NORMALIZER = Path(sys.executable).parent / "callstream-normalizer"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
WORDS = [
    "".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.Random(i).randint(2, 10)))
    for i in range(5000)
]


def corpus(rng: random.Random, size: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(size // 6))


def fathom(i: int, text: str, rng: random.Random) -> bytes:
    start = rng.randrange(0, len(text) - 21_000)
    chunks = [text[start + k * 200 : start + (k + 1) * 200] for k in range(100)]
    names = ["Marisol Etxeberria", "Kwabena Ashworth", "Priya Vandermeer", "Devon Achterberg"]
    meeting = {
        "title": f"Call {i}",
        "recording_id": i,
        "url": f"https://fathom.video/calls/{i}",
        "share_url": f"https://fathom.video/share/tok{i}",
        "created_at": "2026-02-25T15:54:41Z",
        "recording_start_time": "2026-02-25T15:01:37Z",
        "recording_end_time": "2026-02-25T15:53:58Z",
        "calendar_invitees": [
            {
                "name": n,
                "email": f"p{k}@{'quillmere.com' if k < 2 else f'customer{i % 500}.com'}",
                "is_external": k >= 2,
            }
            for k, n in enumerate(names)
        ],
        "recorded_by": {"name": names[0], "email": "p0@quillmere.com", "email_domain": "quillmere.com"},
        "transcript": [
            {"speaker": {"display_name": names[k % 4]}, "text": c, "timestamp": "00:00:04"}
            for k, c in enumerate(chunks)
        ],
        "default_summary": {"template_name": "General", "markdown_formatted": corpus(rng, 800)},
    }
    return msgspec.json.encode(meeting)


def gong(i: int, text: str, rng: random.Random) -> bytes:
    call_id = str(5520183947712650031 + i)
    start = rng.randrange(0, len(text) - 21_000)
    parties = [
        {"id": str(k), "name": f"Person {k}", "emailAddress": f"p{k}@{'quillfern.example' if k < 2 else 'acct.example'}",
         "speakerId": f"s{k}", "userId": "u0" if k == 0 else None, "affiliation": "Internal" if k < 2 else "External"}
        for k in range(4)
    ]  # fmt: skip
    call = {
        "metaData": {"id": call_id, "url": f"https://us-48213.app.gong.io/call?id={call_id}", "title": f"Gong {i}",
                     "started": "2026-01-14T16:02:11Z", "duration": 1874, "primaryUserId": "u0"},
        "context": [{"system": "HubSpot", "objects": [
            {"objectType": "Account", "objectId": str(2187734 + i % 300), "timing": "Now",
             "fields": [{"name": "name", "value": f"Account {i % 300}"},
                        {"name": "domain", "value": f"account{i % 300}.example"}]}]}],
        "parties": parties,
    }  # fmt: skip
    monologues = [
        {"speakerId": f"s{k % 4}", "sentences": [{"start": k, "end": k + 1, "text": text[start + k * 200 : start + (k + 1) * 200]}]}
        for k in range(100)
    ]  # fmt: skip
    return msgspec.json.encode({"call": call, "transcript": {"callId": call_id, "transcript": monologues}})


def raw_events(n: int, seed: int = 7):
    rng = random.Random(seed)
    text = corpus(rng, 2_000_000)
    for i in range(1, n + 1):
        source = "gong" if i % 5 in (1, 3) else "fathom"
        payload = gong(i, text, rng) if source == "gong" else fathom(i, text, rng)
        external_id = str(5520183947712650031 + i) if source == "gong" else str(i)
        event = RawCall(
            event_id=f"bench-{i}",
            source=source,  # type: ignore[arg-type]
            workspace_id=f"ws{i % 4}",
            integration_id=f"int-{source}",
            external_id=external_id,
            origin="pull",
            received_at=T0 + timedelta(seconds=i),
            payload=msgspec.Raw(payload),
        )
        yield source, msgspec.json.encode(event)


CEILING_SQL = """
insert into messages (workspace_id, source, external_id, integration_id, title, content, channel_name, channel_id,
    author_name, author_id, author_email, sent_at, message_metadata, ai_insights, customer_id, content_hash,
    source_updated_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, null, $15, $16)
on conflict (workspace_id, source, external_id) do update set content = excluded.content,
    message_metadata = excluded.message_metadata, content_hash = excluded.content_hash, updated_at = now()
"""


async def migrate(dsn: str) -> None:
    await migrate_all(dsn)


async def preload(nats_url: str, n: int) -> float:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_all(js)
    started = time.perf_counter()
    futures = []
    for i, (source, data) in enumerate(raw_events(n), 1):
        # The subject a gateway publishes to (with the integration's token), so the normalizer does
        # what it does in production for it (its per-batch look-up of erased integrations).
        subject = f"calls.raw.{source}.int-{source}"
        futures.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": f"bench-{i}"}))
        if len(futures) >= 500:
            await asyncio.gather(*futures)
            futures = []
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await nc.close()
    return elapsed


async def ceiling(dsn: str, n: int) -> float:
    """rows/s of plain executemany upserts (batches of 100), timing only the database calls."""
    conn = await asyncpg.connect(dsn)
    timed = 0.0
    batch: list[tuple[object, ...]] = []

    async def flush() -> float:
        t = time.perf_counter()
        await conn.executemany(CEILING_SQL, batch)
        return time.perf_counter() - t

    for _, data in raw_events(n):
        m = map_raw_call(data)
        batch.append((m.workspace_id, m.source, m.external_id, m.integration_id, m.title, m.content, m.channel_name,
                      m.channel_id, m.author_name, m.author_id, m.author_email, m.sent_at, m.metadata_json.decode(),
                      m.ai_insights_json.decode() if m.ai_insights_json else None, m.content_hash, m.observed_at))  # fmt: skip
        if len(batch) == 100:
            timed += await flush()
            batch = []
    if batch:
        timed += await flush()
    assert await conn.fetchval("select count(*) from messages") == n
    await conn.close()
    return n / timed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drain(dsn: str, nats_url: str, n: int, workdir: Path) -> tuple[float, float, int]:
    port = free_port()
    env = {**os.environ, "CALLSTREAM_DATABASE_URL": dsn, "CALLSTREAM_NATS_URL": nats_url,
           "CALLSTREAM_NORMALIZER_PORT": str(port), "CALLSTREAM_LOG_LEVEL": "warning"}  # fmt: skip
    env = service_nats_env("normalizer", env)  # its own identity and permissions, as deployed
    conn = await asyncpg.connect(dsn)
    log = open(workdir / "normalizer.log", "wb")  # noqa: SIM115, ASYNC230 - handed to the child
    started = time.perf_counter()
    proc = subprocess.Popen([str(NORMALIZER), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        wait_port(port, 60)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5).read()  # noqa: ASYNC210
        while await conn.fetchval("select count(*) from messages") < n:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - started
        while await conn.fetchval("select count(*) from outbox where published_at is null"):  # noqa: ASYNC110
            await asyncio.sleep(0.25)
        events = await conn.fetchval("select count(*) from outbox")
        return elapsed, peak_rss_mb(proc.pid), int(events)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--smoke", action="store_true", help="300 calls: checks that it runs, measures nothing")
    args = parser.parse_args()
    n = 300 if args.smoke else args.calls
    with tempfile.TemporaryDirectory(prefix="bench-normalizer-") as tmp:
        base = Path(tmp)
        pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=True)
        js_server = NatsServer(base / "js", port=free_port(), name="bench-nats")
        pg.start()
        js_server.start()
        try:
            admin = await asyncpg.connect(pg.dsn())
            for db in ("ceiling", "normalizer"):
                await admin.execute(f"create database {db}")
            await admin.close()
            await migrate(pg.dsn("ceiling"))
            await migrate(pg.dsn("normalizer"))
            publish_seconds = await preload(js_server.url, n)
            ceiling_rows_per_s = await ceiling(pg.dsn("ceiling"), n)
            elapsed, rss, events = await drain(pg.dsn("normalizer"), js_server.url, n, base)
        finally:
            js_server.stop()
            pg.stop("fast")
    calls_per_s = n / elapsed
    print(json.dumps({
        "benchmark": "normalizer-drain",
        "calls": n,
        "smoke": args.smoke,
        "preload_seconds": round(publish_seconds, 2),
        "drain_seconds": round(elapsed, 2),
        "calls_per_s": round(calls_per_s, 1),
        "ceiling_rows_per_s": round(ceiling_rows_per_s, 1),
        "ratio": round(calls_per_s / ceiling_rows_per_s, 3),
        "peak_rss_mb": round(rss, 1),
        "events": events,
        "targets": {"ratio": 0.6, "peak_rss_mb": 150},
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
