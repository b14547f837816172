"""Real ``callstream-normalizer`` processes against the test servers: restarts, kills, two
replicas, a database outage, and the dlq / replay commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from collections import Counter

import asyncpg
import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig
from normalizer_itkit import NORMALIZER, NormalizerProcess, publish_raw, stream_messages, upserted, wait_until

from callstream.contracts import CALLS_RAW, DLQ, MESSAGES, NORMALIZER_CONSUMER, DeadLetter, LinkSources
from callstream.devstack._services import MIGRATION_ORDER, by_name
from callstream.normalizer._store import OUTBOX_ORDER_LOCK
from callstream.runtime import apply_migrations, ensure_all


def metric(process: NormalizerProcess, outcome: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{process.port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(f'callstream_normalizer_raw_calls_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def fetch_metadata(dsn: str, message_id: str) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        return json.loads(
            await conn.fetchval("select message_metadata::text from messages where id = $1::uuid", message_id)
        )
    finally:
        await conn.close()


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def consumer_idle(js) -> bool:
    info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_serves_health_and_publishes_events(database_url, nats_url, nc, kit, tmp_path, normalizer_processes):
    process = NormalizerProcess(database_url, nats_url, tmp_path / "n.log").start()
    normalizer_processes.append(process)
    js = nc.jetstream()
    await publish_raw(js, kit.raw_call(kit.gong_bundle(0)), kit.subject_of("gong"))
    [event] = await wait_until(lambda: _events(js))
    assert (event.source, event.external_id, event.change, event.version) == (
        "gong",
        "5520183947712650031",
        "created",
        1,
    )
    assert event.link_url == "https://us-48213.app.gong.io/call?id=5520183947712650031"
    # What the linker resolves from, exactly as stored with this version.
    stored = await fetch_metadata(database_url, event.message_id)
    assert event.link_sources == LinkSources(call_id=stored["call_id"], url=stored["url"])
    assert event.link_sources.url == event.link_url
    ready = urllib.request.urlopen(f"http://127.0.0.1:{process.port}/health/ready", timeout=5)
    assert ready.status == 200
    assert metric(process, "stored") == 1.0
    log = process.log_path.read_text()
    assert "Thanks for making time" not in log  # no transcript text in the log


async def _events(js):
    return upserted(await stream_messages(js, MESSAGES))


async def test_process_killed_between_commit_and_ack_emits_no_duplicate(
    database_url, own_nats, kit, tmp_path, normalizer_processes
):
    nc = await nats.connect(own_nats.url)
    js = nc.jetstream()
    await ensure_all(js)
    # a short ack_wait so the redelivery comes quickly (the service leaves an existing consumer alone)
    await js.delete_consumer(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    await js.add_consumer(
        CALLS_RAW,
        ConsumerConfig(
            durable_name=NORMALIZER_CONSUMER.durable,
            filter_subject=NORMALIZER_CONSUMER.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=2,
            max_deliver=NORMALIZER_CONSUMER.max_deliver,
        ),
    )
    holder = await asyncpg.connect(database_url)
    await holder.execute("select pg_advisory_lock($1)", OUTBOX_ORDER_LOCK)  # the store waits just before its commit
    for i in range(1, 21):
        await publish_raw(js, kit.raw_call(kit.fathom_meeting(recording_id=i), external_id=str(i)), "calls.raw.fathom")
    first = NormalizerProcess(database_url, own_nats.url, tmp_path / "first.log").start()
    normalizer_processes.append(first)
    await wait_until(
        lambda: holder.fetchval("select count(*) from pg_locks where locktype = 'advisory' and not granted"), 30
    )
    await nc.close()
    # The broker goes away with the batch in flight, so the ack cannot reach it (a frozen broker
    # would still read the ack from its socket buffer later).
    own_nats.kill()
    await holder.execute("select pg_advisory_unlock($1)", OUTBOX_ORDER_LOCK)
    committed = await wait_until(lambda: holder.fetchval("select count(*) from messages"), 30)
    await asyncio.sleep(0.5)  # the batch's commit is done; its ack failed
    committed = await holder.fetchval("select count(*) from messages")
    first.kill()  # committed, never acknowledged
    own_nats.start()
    assert committed > 0
    assert await holder.fetchval("select count(*) from outbox") == committed
    second = NormalizerProcess(database_url, own_nats.url, tmp_path / "second.log").start()
    normalizer_processes.append(second)
    nc = await nats.connect(own_nats.url)
    js = nc.jetstream()
    await wait_until(lambda: consumer_idle(js), 30)
    events = await wait_until(lambda: _events(js), 30)
    await asyncio.sleep(1.5)  # a duplicate, if any, would be published by now
    events = await _events(js)
    assert sorted(int(e.external_id) for e in events) == list(range(1, 21))
    assert {e.change for e in events} == {"created"}
    assert metric(second, "unchanged") == committed  # redelivered, found unchanged, nothing emitted
    assert await holder.fetchval("select count(*) from outbox") == 20
    await holder.close()
    await nc.close()


async def test_two_processes_on_one_consumer(database_url, nats_url, nc, kit, tmp_path, normalizer_processes):
    env = {"CALLSTREAM_NORMALIZER_BATCH_SIZE": "20"}
    for name in ("a", "b"):
        normalizer_processes.append(NormalizerProcess(database_url, nats_url, tmp_path / f"{name}.log", **env).start())
    await _two_versions_of_200_calls_stored_once_each(database_url, nc, kit, normalizer_processes)


async def test_one_process_writing_four_batches_at_once(
    database_url, nats_url, nc, kit, tmp_path, normalizer_processes
):
    # Batches of 5: the two versions of a call often fall in two batches committed concurrently.
    env = {"CALLSTREAM_NORMALIZER_BATCH_SIZE": "5", "CALLSTREAM_NORMALIZER_STORE_CONCURRENCY": "4"}
    normalizer_processes.append(NormalizerProcess(database_url, nats_url, tmp_path / "n.log", **env).start())
    await _two_versions_of_200_calls_stored_once_each(database_url, nc, kit, normalizer_processes)


async def _two_versions_of_200_calls_stored_once_each(database_url, nc, kit, normalizer_processes) -> None:
    js = nc.jetstream()
    for i in range(1, 201):
        first = kit.raw_call(kit.fathom_meeting(recording_id=i), external_id=str(i), received_at=kit.later(0))
        second = (
            kit.raw_call(
                kit.fathom_meeting(recording_id=i, title=f"v2 {i}"), external_id=str(i), received_at=kit.later(60)
            )
            if i % 2
            else first  # the same bytes again under another event id
        )
        await publish_raw(js, first, "calls.raw.fathom", msg_id=f"{i}-a")
        await publish_raw(js, second, "calls.raw.fathom", msg_id=f"{i}-b")
    await wait_until(lambda: consumer_idle(js), 60)
    conn = await asyncpg.connect(database_url)
    try:
        await wait_until(lambda: conn.fetchval("select count(*) = 0 from outbox where published_at is null"), 30)
        assert await conn.fetchval("select count(*) from messages") == 200
        titles = dict(await conn.fetch("select external_id, title from messages"))
        assert all(titles[str(i)] == f"v2 {i}" for i in range(1, 201, 2))
        outbox_rows = await conn.fetchval("select count(*) from outbox")
    finally:
        await conn.close()
    events = await _events(js)
    assert len(events) == outbox_rows
    pairs = Counter((e.message_id, e.version) for e in events)
    assert max(pairs.values()) == 1  # no event twice
    assert len({e.message_id for e in events}) == 200
    assert all(metric(p, "stored") > 0 for p in normalizer_processes)  # every process did work


async def test_postgres_stopped_for_ten_seconds(own_postgres, nats_url, nc, kit, tmp_path, normalizer_processes):
    dsn = own_postgres.dsn()
    conn = await asyncpg.connect(dsn)
    for name in MIGRATION_ORDER:
        directory = by_name(name).migrations()
        if directory is not None:
            await apply_migrations(conn, name, directory)
    await conn.close()
    process = NormalizerProcess(dsn, nats_url, tmp_path / "n.log").start()
    normalizer_processes.append(process)
    js = nc.jetstream()

    async def publish(first: int, last: int) -> None:
        for i in range(first, last + 1):
            await publish_raw(
                js, kit.raw_call(kit.fathom_meeting(recording_id=i), external_id=str(i)), "calls.raw.fathom"
            )

    await publish(1, 100)
    await wait_until(lambda: count(dsn, "select count(*) = 100 from messages"), 30)
    own_postgres.stop("fast")
    await publish(101, 200)  # arrive while the database is away
    await asyncio.sleep(10)
    own_postgres.start()
    await wait_until(lambda: consumer_idle(js), 60)
    await wait_until(lambda: count(dsn, "select count(*) = 0 from outbox where published_at is null"), 30)
    assert await count(dsn, "select count(*) from messages") == 200
    events = await _events(js)
    assert sorted(int(e.external_id) for e in events) == list(range(1, 201))
    assert await stream_messages(js, DLQ) == []


def cli(*args: str, database_url: str, nats_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLSTREAM_DATABASE_URL": database_url, "CALLSTREAM_NATS_URL": nats_url}
    return subprocess.run([str(NORMALIZER), *args], env=env, capture_output=True, text=True, timeout=60)


async def test_dlq_commands_and_replay(database_url, nats_url, nc, kit, tmp_path, normalizer_processes):
    js = nc.jetstream()
    process = NormalizerProcess(database_url, nats_url, tmp_path / "n.log").start()
    normalizer_processes.append(process)
    await publish_raw(js, b"garbage", "calls.raw.gong")
    good = kit.raw_call(kit.fathom_meeting())
    # an entry as the consumer writes it when it gives up during a long outage: redriving stores it
    letter = DeadLetter(
        consumer="normalizer",
        subject="calls.raw.fathom",
        stream_sequence=99,
        headers={"Nats-Msg-Id": "orig"},
        data=good,
        error="gave up after 10 deliveries: OSError",
        delivery_count=10,
        failed_at=kit.T0,
    )
    await js.publish("dlq.normalizer", msgspec.json.encode(letter))
    await wait_until(lambda: _dlq_size(js, 2), 30)
    listed = cli("dlq", "list", database_url=database_url, nats_url=nats_url)
    assert listed.returncode == 0, listed.stderr
    # the two entries race (the consumer's own letter against the hand-written one): match by subject
    entries = {e["subject"]: e for e in map(json.loads, listed.stdout.splitlines())}
    assert sorted(entries) == ["calls.raw.fathom", "calls.raw.gong"]
    assert entries["calls.raw.gong"]["error"].startswith("unmappable")
    garbage_seq = str(entries["calls.raw.gong"]["dlq_seq"])
    shown = cli("dlq", "show", garbage_seq, "--data", database_url=database_url, nats_url=nats_url)
    assert json.loads(shown.stdout)["data"] == "garbage"
    redriven_seq = str(entries["calls.raw.fathom"]["dlq_seq"])
    redriven = cli("dlq", "redrive", redriven_seq, database_url=database_url, nats_url=nats_url)
    assert redriven.returncode == 0, redriven.stderr
    await wait_until(lambda: count(database_url, "select count(*) = 1 from messages"), 30)
    assert len(await stream_messages(js, DLQ)) == 1  # the redriven entry is gone, the garbage stays
    # replay after a "mapping fix": the stored row differs from what the raw event maps to now
    await count(database_url, "update messages set title = 'stale', content_hash = 'old' returning 1")
    replayed = cli("replay", "--since", "1", database_url=database_url, nats_url=nats_url)
    assert replayed.returncode == 0, replayed.stderr
    report = json.loads(replayed.stdout.strip().splitlines()[-1])
    assert report == {"read": 2, "changed": 1, "unchanged": 0, "unmappable": 1}
    again = json.loads(
        cli("replay", "--since", "1", database_url=database_url, nats_url=nats_url).stdout.splitlines()[-1]
    )
    assert again == {"read": 2, "changed": 0, "unchanged": 1, "unmappable": 1}
    assert await count(database_url, "select count(*) from messages where title = 'stale'") == 0
    events = await wait_until(lambda: _n_events(js, 2), 30)
    assert [(e.change, e.version) for e in events] == [("created", 1), ("updated", 2)]


async def _dlq_size(js, n):
    return len(await stream_messages(js, DLQ)) == n


async def _n_events(js, n):
    events = await _events(js)
    return events if len(events) == n else None


async def test_dlq_command_lists_every_dead_letter_of_the_normalizer_and_refuses_a_hollow_redrive(
    database_url, nats_url, nc, kit
):
    """Feature links and outbox rows are dead-lettered on subjects of their own
    (``dlq.normalizer-features``, ``dlq.normalizer-outbox``): the command lists them too. An outbox
    row too large even for a dead letter is kept without its bytes: redriving it is refused."""
    js = nc.jetstream()
    for consumer, subject, data in (
        ("normalizer-features", "features.linked", b"{}"),
        ("normalizer-outbox", "messages.upserted.fathom", b""),
    ):
        letter = DeadLetter(
            consumer=consumer,
            subject=subject,
            stream_sequence=7,
            headers={},
            data=data,
            error="test",
            delivery_count=1,
            failed_at=kit.T0,
        )
        await js.publish(f"dlq.{consumer}", msgspec.json.encode(letter))
    listed = cli("dlq", "list", database_url=database_url, nats_url=nats_url)
    assert listed.returncode == 0, listed.stderr
    entries = {e["consumer"]: e for e in map(json.loads, listed.stdout.splitlines())}
    assert sorted(entries) == ["normalizer-features", "normalizer-outbox"]
    hollow = str(entries["normalizer-outbox"]["dlq_seq"])
    refused = cli("dlq", "redrive", hollow, database_url=database_url, nats_url=nats_url)
    assert refused.returncode == 1
    assert "without its bytes" in refused.stderr
    assert await _dlq_size(js, 2)  # still there
