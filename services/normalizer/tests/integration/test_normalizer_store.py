"""The consumer's processing and the store against real PostgreSQL and JetStream (in process)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from nats.js.api import AckPolicy, ConsumerConfig
from normalizer_itkit import publish_raw, settings_for, stream_messages, upserted

from callstream.contracts import (
    CALLS_RAW,
    DLQ,
    FEATURES_LINKED,
    MESSAGES,
    NORMALIZER_CONSUMER,
    DeadLetter,
    FeatureLinked,
    MessageRef,
)
from callstream.normalizer._consumer import RawCallProcessor
from callstream.normalizer._features import SWEEP_PENDING, handle_feature_msg
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._outbox import publish_pending
from callstream.normalizer._store import store_batch
from callstream.runtime import create_pool

sys.path.insert(0, str(Path(__file__).parents[1]))
from normalizer_strategies import malformed_events, well_shaped_events


async def drain(pool, nc, database_url, nats_url, *, batch=100):
    """Fetch and process until the consumer has nothing pending; returns the batch results."""
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
    processor = RawCallProcessor(pool, js, settings_for(database_url, nats_url))
    results = []
    while True:
        last = (await js.stream_info(CALLS_RAW)).state.last_seq
        info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
        if info.delivered.stream_seq >= last and info.num_ack_pending == 0:
            return results
        try:
            msgs = await sub.fetch(batch, timeout=1)
        except Exception:
            await asyncio.sleep(0.05)
            continue
        results.append(await processor.process(msgs))


async def relay_all(pool, nc):
    js = nc.jetstream()
    async with pool.acquire() as conn:
        while await publish_pending(conn, js, 500):
            pass
    return upserted(await stream_messages(js, MESSAGES))


async def test_each_stored_batch_is_measured(pool, nc, kit, database_url, nats_url):
    """Batch sizes and store times for the pipeline dashboard (deploy/observability)."""
    from prometheus_client import REGISTRY

    def count(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    batches, messages = (
        count("callstream_normalizer_batch_messages_count"),
        count("callstream_normalizer_batch_messages_sum"),
    )
    timed = count("callstream_normalizer_batch_store_seconds_count")
    js = nc.jetstream()
    for recording_id in (11, 12, 13):
        meeting = kit.fathom_meeting(recording_id=recording_id)
        await publish_raw(js, kit.raw_call(meeting, external_id=str(recording_id)), kit.subject_of("fathom"))
    await drain(pool, nc, database_url, nats_url)
    assert count("callstream_normalizer_batch_messages_count") > batches
    assert count("callstream_normalizer_batch_messages_sum") - messages == 3
    assert (
        count("callstream_normalizer_batch_store_seconds_count") - timed
        == count("callstream_normalizer_batch_messages_count") - batches
    )


async def test_same_raw_event_three_times_is_one_row_and_one_event(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    data = kit.raw_call(kit.fathom_meeting())
    for i in range(3):  # three deliveries (distinct ids, so JetStream's duplicate window does not hide them)
        await publish_raw(js, data, kit.subject_of("fathom"), msg_id=f"again-{i}")
    await drain(pool, nc, database_url, nats_url, batch=1)
    assert await pool.fetchval("select count(*) from messages") == 1
    assert await pool.fetchval("select version from messages") == 1
    events = await relay_all(pool, nc)
    assert [(e.external_id, e.change, e.version) for e in events] == [("512330871", "created", 1)]
    # and the same three in one batch
    for i in range(3):
        await publish_raw(js, data, kit.subject_of("fathom"), msg_id=f"batch-{i}")
    await drain(pool, nc, database_url, nats_url)
    assert len(await relay_all(pool, nc)) == 1


async def test_rows_hold_the_mapped_message(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    await publish_raw(js, kit.raw_call(kit.gong_bundle(0)), kit.subject_of("gong"))
    await publish_raw(js, kit.raw_call(kit.fathom_meeting()), kit.subject_of("fathom"))
    await drain(pool, nc, database_url, nats_url)
    row = await pool.fetchrow(
        "select m.*, c.domain, c.name as customer_name, c.external_system, c.external_id as crm_id"
        " from messages m join customers c on c.id = m.customer_id where source = 'gong'"
    )
    assert row["external_id"] == "5520183947712650031"
    assert row["content"].startswith("Maren Okafor: Thanks for making time today")
    assert row["message_metadata"]["hubspot_context"]["accounts"][0]["object_id"] == "21877340012"
    assert (row["domain"], row["customer_name"], row["external_system"], row["crm_id"]) == (
        "harborline-freight.example",
        "Harborline Freight",
        "hubspot",
        "21877340012",
    )
    participants = await pool.fetch(
        "select name, affiliation, speaker_id, role from message_participants where message_id = $1 order by position",
        row["id"],
    )
    assert [p["name"] for p in participants] == ["Maren Okafor", "Teodor Vance", "Ines Halloway"]
    assert participants[0]["role"] == "host"
    hosts = {r["source"]: r["host"] for r in await pool.fetch("select source, host from provider_hosts")}
    assert hosts == {"gong": "us-48213.app.gong.io", "fathom": "fathom.video"}


async def test_participants_of_a_written_message_are_replaced_whole(pool, nc, kit, database_url, nats_url):
    """In one batch: an update with fewer invitees replaces the old list, a new message gets its own,
    and a message sent again unchanged keeps its rows."""
    js = nc.jetstream()
    subject = kit.subject_of("fathom")
    first = kit.fathom_meeting(recording_id=1)
    invitees = first["calendar_invitees"]
    assert len(invitees) >= 2
    kept = kit.fathom_meeting(recording_id=2)
    for meeting in (first, kept):
        await publish_raw(js, kit.raw_call(meeting, external_id=str(meeting["recording_id"])), subject)
    await drain(pool, nc, database_url, nats_url)

    async def names(external_id):
        return [
            r["name"]
            for r in await pool.fetch(
                "select p.name from message_participants p join messages m on m.id = p.message_id"
                " where m.external_id = $1 order by p.position",
                external_id,
            )
        ]

    kept_before = await names("2")
    assert len(kept_before) == len(invitees)
    fewer = kit.fathom_meeting(recording_id=1, title="Fewer invitees", calendar_invitees=invitees[-1:])
    new = kit.fathom_meeting(recording_id=3, calendar_invitees=invitees[:1])
    expected = {}
    for meeting in (fewer, new, kept):
        raw = kit.raw_call(meeting, external_id=str(meeting["recording_id"]), received_at=kit.later(60))
        expected[str(meeting["recording_id"])] = [p.name for p in map_raw_call(raw).participants]
        await publish_raw(js, raw, subject)
    await drain(pool, nc, database_url, nats_url)
    assert len(expected["1"]) < len(kept_before)
    assert await names("1") == expected["1"]
    assert await names("3") == expected["3"]
    assert await names("2") == kept_before == expected["2"]
    events = await relay_all(pool, nc)
    assert [(e.external_id, e.change, e.version) for e in events] == [
        ("1", "created", 1),
        ("2", "created", 1),
        ("1", "updated", 2),
        ("3", "created", 1),
    ]


async def test_a_plan_made_while_the_tables_were_empty_still_reads_by_key(pool, kit):
    """The store's plans are kept for the connection. Made on an empty database, a kept plan used to
    seq-scan message_participants on every batch as it grew; the store reads by key whatever the
    tables held when it was planned."""

    def batch(first):
        return [
            map_raw_call(kit.raw_call(kit.fathom_meeting(recording_id=n), external_id=str(n)))
            for n in range(first, first + 3)
        ]

    async with pool.acquire() as conn:
        for round_ in range(8):  # past the five custom plans after which PostgreSQL may keep a generic one
            await store_batch(conn, batch(1 + round_ * 3))
        await conn.execute(
            "insert into message_participants (message_id, position, name)"
            " select id, 100 + g, 'filler' from messages, generate_series(1, 2000) g"
        )
        # The counters below are the backend's not yet reported ones: report the filler's first.
        await conn.execute("select pg_stat_force_next_flush()")
        async with conn.transaction():
            events = await store_batch(conn, batch(1000))
            scans = await conn.fetchrow(
                "select coalesce(sum(seq_scan), 0) as seq_scan, coalesce(sum(idx_scan), 0) as idx_scan"
                " from pg_stat_xact_user_tables"
                " where relname in ('message_participants', 'customers', 'message_features', 'messages')"
            )
    assert len(events) == 3
    assert scans["idx_scan"] > 0
    assert scans["seq_scan"] == 0


async def test_the_relay_finds_rows_by_key_in_a_large_outbox(pool, nc, kit):
    """Published rows stay for the retention period: the relay's take, planned while the outbox was
    small, still reads it by key once it holds many rows."""
    js = nc.jetstream()
    async with pool.acquire() as conn:
        for n in range(1, 9):  # past the five custom plans after which PostgreSQL may keep a generic one
            await store_batch(
                conn, [map_raw_call(kit.raw_call(kit.fathom_meeting(recording_id=n), external_id=str(n)))]
            )
            assert await publish_pending(conn, js, 500) == 1
        await conn.execute(
            "insert into outbox (subject, payload, published_at) select 'x', 'x', now() from generate_series(1, 20000)"
        )
        await store_batch(conn, [map_raw_call(kit.raw_call(kit.fathom_meeting(recording_id=99), external_id="99"))])
        await conn.execute("select pg_stat_force_next_flush()")
        async with conn.transaction():
            published = await publish_pending(conn, js, 500)
            scans = await conn.fetchrow(
                "select seq_scan, idx_scan from pg_stat_xact_user_tables where relname = 'outbox'"
            )
    assert published == 1
    assert scans["idx_scan"] > 0
    assert scans["seq_scan"] == 0


async def test_a_relay_cycle_that_cannot_publish_leaves_its_rows_for_the_next(
    pool, kit, own_nats, monkeypatch: pytest.MonkeyPatch
):
    """The relay marks rows in the statement that takes them: with the broker down, the cycle fails,
    the mark is rolled back with it, and the rows go out once the broker is back, exactly once."""
    import nats

    from callstream.normalizer import _outbox
    from callstream.runtime import ensure_all

    monkeypatch.setattr(_outbox, "PUBLISH_ACK_TIMEOUT_SECONDS", 1.0)
    nc = await nats.connect(own_nats.url, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        await ensure_all(js)
        async with pool.acquire() as conn:
            await store_batch(conn, [map_raw_call(kit.raw_call(kit.fathom_meeting(recording_id=5), external_id="5"))])
            own_nats.stop()
            with pytest.raises((TimeoutError, nats.errors.Error)):
                await publish_pending(conn, js, 500)
            assert await conn.fetchval("select count(*) from outbox where published_at is null") == 1
            own_nats.start()
            deadline = time.monotonic() + 15
            while not nc.is_connected:
                assert time.monotonic() < deadline, "no reconnect"
                await asyncio.sleep(0.1)
            assert await publish_pending(conn, js, 500) == 1
            assert await conn.fetchval("select count(*) from outbox where published_at is null") == 0
        events = upserted(await stream_messages(js, MESSAGES))
        assert [(e.external_id, e.change) for e in events] == [("5", "created")]
    finally:
        await nc.close()


async def test_never_downgrade(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    subject = kit.subject_of("fathom")
    newer = kit.raw_call(kit.fathom_meeting(title="Newer title"), received_at=kit.later(600))
    await publish_raw(js, newer, subject)
    await drain(pool, nc, database_url, nats_url)
    before = await pool.fetchrow("select title, content, version, updated_at from messages")
    # older content after newer
    await publish_raw(js, kit.raw_call(kit.fathom_meeting(title="Older title"), received_at=kit.later(0)), subject)
    # transcript-less after transcript, even though observed later
    await publish_raw(
        js,
        kit.raw_call(kit.fathom_meeting(title="No transcript", transcript=None), received_at=kit.later(900)),
        subject,
    )
    await drain(pool, nc, database_url, nats_url)
    after = await pool.fetchrow("select title, content, version, updated_at from messages")
    assert dict(after) == dict(before)
    # a real change with a transcript and a later observation does update
    await publish_raw(js, kit.raw_call(kit.fathom_meeting(title="Renamed"), received_at=kit.later(1200)), subject)
    await drain(pool, nc, database_url, nats_url)
    assert await pool.fetchval("select title from messages") == "Renamed"
    events = await relay_all(pool, nc)
    assert [(e.change, e.version, e.title) for e in events] == [
        ("created", 1, "Newer title"),
        ("updated", 2, "Renamed"),
    ]


async def test_a_call_made_private_later_loses_its_stored_transcript(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    subject = kit.subject_of("gong")
    await publish_raw(js, kit.raw_call(kit.gong_bundle(0), received_at=kit.later(0)), subject)
    await drain(pool, nc, database_url, nats_url)
    assert await pool.fetchval("select octet_length(content) from messages") > 0
    private = kit.gong_bundle(0, transcript=False)
    private["call"]["metaData"]["isPrivate"] = True
    # an older private copy changes nothing; a newer one erases what was said
    await publish_raw(js, kit.raw_call(private, received_at=kit.later(-60)), subject)
    await drain(pool, nc, database_url, nats_url)
    assert await pool.fetchval("select octet_length(content) from messages") > 0
    await publish_raw(js, kit.raw_call(private, received_at=kit.later(60)), subject)
    await drain(pool, nc, database_url, nats_url)
    row = await pool.fetchrow("select content, ai_insights, message_metadata::text as m, version from messages")
    assert row["content"] == ""
    assert row["ai_insights"] is None
    assert '"private": true' in row["m"]
    assert '"transcript_data": null' in row["m"]
    assert row["version"] == 2
    events = await relay_all(pool, nc)
    assert [(e.change, e.version) for e in events] == [("created", 1), ("updated", 2)]


async def test_poison_payload_goes_to_dlq_and_the_rest_is_stored(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    subject = kit.subject_of("fathom")
    await publish_raw(js, kit.raw_call(kit.fathom_meeting(recording_id=1), external_id="1"), subject)
    poison_seq = await publish_raw(js, b'{"v":1,"source":"fathom","payload":', subject)
    await publish_raw(js, kit.raw_call(kit.fathom_meeting(recording_id=2), external_id="2"), subject)
    # a payload the database refuses (an index row too large); its batch neighbours still land
    huge = "9" * 3000 + "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))
    bundle = kit.gong_bundle(1)
    bundle["call"]["metaData"]["id"] = huge
    await publish_raw(js, kit.raw_call(bundle, external_id=huge), kit.subject_of("gong"))
    await publish_raw(js, kit.raw_call(kit.fathom_meeting(recording_id=3), external_id="3"), subject)
    await drain(pool, nc, database_url, nats_url)
    stored = [r["external_id"] for r in await pool.fetch("select external_id from messages order by external_id")]
    assert stored == ["1", "2", "3"]
    letters = [msgspec.json.decode(m.data, type=DeadLetter) for m in await stream_messages(js, DLQ)]
    assert [(d.subject, d.delivery_count) for d in letters] == [(subject, 1), (kit.subject_of("gong"), 1)]
    assert letters[0].stream_sequence == poison_seq
    assert letters[0].error.startswith("unmappable: not a RawCall v1")
    assert letters[0].data == b'{"v":1,"source":"fathom","payload":'
    assert "rejected by the database" in letters[1].error
    info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    assert info.num_ack_pending == 0


async def test_transient_failures_nak_then_dead_letter_at_max_deliver(nc, kit, nats_url, database_url):
    """A database that is not there: nak with a delay, and on the last allowed delivery, the DLQ."""
    js = nc.jetstream()
    await js.add_consumer(
        CALLS_RAW,
        ConsumerConfig(durable_name="short", ack_policy=AckPolicy.EXPLICIT, max_deliver=2, ack_wait=30),
    )
    await publish_raw(js, kit.raw_call(kit.fathom_meeting()), kit.subject_of("fathom"))
    dead_pool = await create_pool("postgresql://postgres@127.0.0.1:9/none", timeout=1)
    settings = settings_for(database_url, nats_url, CALLSTREAM_NORMALIZER_RETRY_BASE_SECONDS=0.1)
    processor = RawCallProcessor(dead_pool, js, settings, max_deliver=2)
    sub = await js.pull_subscribe_bind(durable="short", stream=CALLS_RAW)
    first = await processor.process(await sub.fetch(1, timeout=2))
    assert (first.retried, first.dead_lettered) == (1, 0)
    second = await processor.process(await sub.fetch(1, timeout=5))  # back after the nak delay
    assert (second.retried, second.dead_lettered) == (0, 1)
    [letter] = [msgspec.json.decode(m.data, type=DeadLetter) for m in await stream_messages(js, DLQ)]
    assert letter.delivery_count == 2
    assert letter.error.startswith("gave up after 2 deliveries")
    await dead_pool.close()


async def test_features_link_now_or_when_the_message_arrives(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    early = FeatureLinked(
        workspace_id="ws1",
        feature_id="f1",
        feature_name="SSO",
        message=MessageRef(source="fathom", external_id="512330871"),
    )
    await js.publish(FEATURES_LINKED, msgspec.json.encode(early))
    sub = await js.pull_subscribe_bind(durable="normalizer-features", stream="FEATURES")
    [msg] = await sub.fetch(1, timeout=2)
    assert await handle_feature_msg(pool, js, msg)
    assert await pool.fetchval("select message_id from message_features") is None
    await publish_raw(js, kit.raw_call(kit.fathom_meeting()), kit.subject_of("fathom"))
    await drain(pool, nc, database_url, nats_url)
    message_id = await pool.fetchval("select id from messages")
    assert await pool.fetchval("select message_id from message_features where feature_id = 'f1'") == message_id
    # by id, for a message that exists
    by_id = FeatureLinked(workspace_id="ws1", feature_id="f2", message=MessageRef(message_id=str(message_id)))
    bad = FeatureLinked(workspace_id="ws1", feature_id="f3", message=MessageRef())
    await js.publish(FEATURES_LINKED, msgspec.json.encode(by_id))
    await js.publish(FEATURES_LINKED, msgspec.json.encode(bad))
    for msg in await sub.fetch(2, timeout=2):
        assert await handle_feature_msg(pool, js, msg)
    rows = await pool.fetch("select feature_id, message_id from message_features order by feature_id")
    assert [(r["feature_id"], r["message_id"]) for r in rows] == [("f1", message_id), ("f2", message_id)]
    assert await pool.fetchval("select name from features where id = 'f1'") == "SSO"
    [letter] = [msgspec.json.decode(m.data, type=DeadLetter) for m in await stream_messages(js, DLQ)]
    assert letter.consumer == "normalizer-features"
    # the sweep links what a race left pending
    await pool.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id) values ('ws1', 'f1', 'gong', 'x')"
    )
    await pool.execute("update messages set external_id = 'x', source = 'gong'")
    await pool.execute(SWEEP_PENDING)
    assert await pool.fetchval("select count(*) from message_features where message_id is null") == 0


PENDING_LEFT = "select exists (select 1 from outbox where published_at is null)"


@pytest.mark.parametrize("relays", [2])
async def test_relay_publishes_in_commit_order_once(pool, nc, kit, database_url, nats_url, relays):
    js = nc.jetstream()
    for i in range(1, 301):
        await publish_raw(
            js, kit.raw_call(kit.fathom_meeting(recording_id=i), external_id=str(i)), kit.subject_of("fathom")
        )
    await drain(pool, nc, database_url, nats_url, batch=50)
    pools = [await create_pool(database_url, max_size=1) for _ in range(relays)]

    async def relay(p):
        # Until nothing is left (not a fixed number of rounds: a relay that finds the other holding
        # the lock gets 0, and how often depends on the machine's load).
        total = 0
        deadline = time.monotonic() + 30
        async with p.acquire() as conn:
            while time.monotonic() < deadline:
                published = await publish_pending(conn, nc.jetstream(), 25)
                total += published
                if not published and not await conn.fetchval(PENDING_LEFT):
                    break
                await asyncio.sleep(0)
        return total

    totals = await asyncio.gather(*(relay(p) for p in pools))
    for p in pools:
        await p.close()
    assert sum(totals) == 300
    msgs = await stream_messages(js, MESSAGES)
    ids = [int(m.headers["Nats-Msg-Id"].removeprefix("outbox-")) for m in msgs]
    assert ids == sorted(ids)
    assert len(set(ids)) == 300
    assert await pool.fetchval("select count(*) from outbox where published_at is null") == 0


def _examples(strategy, n):
    """``n`` distinct examples drawn by hypothesis (shrinking is not needed to prove the point)."""
    found = []

    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        found.append(value)

    collect()
    return found


async def test_malformed_events_go_to_the_dlq_and_never_stop_the_consumer(pool, nc, kit, database_url, nats_url):
    js = nc.jetstream()
    malformed = _examples(malformed_events(), 40)
    good = _examples(well_shaped_events(), 40)
    for i, data in enumerate(malformed):
        await publish_raw(js, data, "calls.raw.fathom", msg_id=f"bad-{i}")
        source, _, event = good[i]
        await publish_raw(js, event, f"calls.raw.{source}", msg_id=f"good-{i}")
    results = await drain(pool, nc, database_url, nats_url, batch=25)
    assert sum(r.dead_lettered for r in results) == len(malformed)
    assert sum(r.retried for r in results) == 0
    assert len(await stream_messages(js, DLQ)) == len(malformed)
    stored = await pool.fetchval("select count(distinct (source, external_id)) from messages")
    assert stored == len({(source, external_id) for source, external_id, _ in good})


async def test_a_rule_one_meeting_breaks_holds_back_only_that_meeting(pool, nc, kit, database_url, nats_url):
    """Not an outage and not a bad value: a rule of the database (here a trigger, as an operator
    might add; a constraint or a bug would do the same) refuses one meeting of a batch. Before, the
    whole batch was retried together and each good meeting spent a delivery on it, until all of
    them went to the DLQ; now the rest is stored at once and only that meeting is retried."""
    await pool.execute(
        """
        create function refuse_one() returns trigger language plpgsql as $$
        begin
          if new.external_id = '2' then raise exception 'refused by a rule' using errcode = 'P0001'; end if;
          return new;
        end $$;
        create trigger refuse_one before insert on messages for each row execute function refuse_one();
        """
    )
    js = nc.jetstream()
    subject = kit.subject_of("fathom")
    for recording_id in (1, 2, 3):
        meeting = kit.fathom_meeting(recording_id=recording_id)
        await publish_raw(js, kit.raw_call(meeting, external_id=str(recording_id)), subject)
    sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
    processor = RawCallProcessor(pool, js, settings_for(database_url, nats_url))
    result = await processor.process(await sub.fetch(3, timeout=2))
    assert (result.stored, result.retried, result.dead_lettered) == (2, 1, 0)
    stored = [r["external_id"] for r in await pool.fetch("select external_id from messages order by external_id")]
    assert stored == ["1", "3"]
    info = await js.consumer_info(CALLS_RAW, NORMALIZER_CONSUMER.durable)
    assert (info.num_ack_pending, info.num_redelivered) == (1, 0)  # only '2' waits for another try
