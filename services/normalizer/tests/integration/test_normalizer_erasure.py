"""The normalizer's part of an erasure (issue #19, section 2), on a real normalizer process with its
own NATS identity, real PostgreSQL and JetStream: after an ``ErasureRequested`` for one of two
integrations of a workspace, neither a ``pg_dump`` of the database nor any event in any stream
holds the erased integration's transcript sentences, emails or call ids, the other integration's
data is all there, and a raw call of the erased integration that arrives later is never stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from normalizer_itkit import NormalizerProcess, stream_messages, wait_until

from callstream.contracts import (
    ERASURES,
    ERASURES_REQUESTED,
    FEATURES_LINKED,
    STREAMS,
    ErasureFinished,
    ErasureRequested,
    FeatureLinked,
    MessageDeleted,
    MessageRef,
    RawCall,
    raw_calls_subject,
)
from callstream.devstack import pg_dump
from callstream.normalizer._erasure import erase
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._store import store_batch

pytestmark = pytest.mark.usefixtures("jetstream")


def _for(raw: bytes, integration_id: str) -> bytes:
    call = msgspec.json.decode(raw, type=RawCall)
    return msgspec.json.encode(msgspec.structs.replace(call, integration_id=integration_id))


async def _count(pool: Any, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def _everything_in_streams(js: Any) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for spec in STREAMS:
        out += [(m.subject, bytes(m.data)) for m in await stream_messages(js, spec.name)]
    return out


async def test_an_erased_integration_leaves_nothing_behind_and_its_neighbour_keeps_everything(
    pool: Any, nc: Any, database_url: str, nats_url: str, tmp_path: Path, kit: Any, normalizer_processes: list[Any]
) -> None:
    js = nc.jetstream()
    normalizer = NormalizerProcess(database_url, nats_url, tmp_path / "normalizer.log").start()
    normalizer_processes.append(normalizer)

    meeting = kit.fathom_meeting()
    erased_ids = ["700001", "700002", "700003"]
    for rid in erased_ids[:2]:
        raw = _for(kit.raw_call(kit.fathom_meeting(recording_id=int(rid))), "int-a")
        await js.publish(raw_calls_subject("fathom", "int-a"), raw)
    # before raw subjects carried the integration's id: found by reading the stream, not by subject
    await js.publish("calls.raw.fathom", _for(kit.raw_call(kit.fathom_meeting(recording_id=700003)), "int-a"))
    # unmappable: dead-lettered with its bytes, which name the integration
    broken = _for(kit.raw_call(b'{"recording_id": 700009, "note": "not a meeting"}', source="fathom"), "int-a")
    await js.publish(raw_calls_subject("fathom", "int-a"), broken)
    bundle = kit.gong_bundle()
    kept_id = str(bundle["call"]["metaData"]["id"])
    await js.publish(raw_calls_subject("gong", "int-b"), _for(kit.raw_call(bundle), "int-b"))
    await js.publish(
        FEATURES_LINKED,
        msgspec.json.encode(
            FeatureLinked(
                workspace_id="ws1", feature_id="f-1", message=MessageRef(source="fathom", external_id="700001")
            )
        ),
    )

    async def stored() -> bool:
        return (
            await _count(pool, "select count(*) from messages") == 4
            and await _count(pool, "select count(*) from message_features where message_id is not null") == 1
        )

    await wait_until(stored, timeout=30)
    await wait_until(lambda: _dead_letters(js), timeout=30)
    erased_rows = await pool.fetch("select id from messages where integration_id = 'int-a'")
    await pool.execute(
        """insert into data_points (workspace_id, message_id, data_point_key, data_point_category, text_value,
               evidence_quote, extractor_name, extractor_version, extractor_version_order, event_id, recorded_at)
           values ('ws1', $1, 'budget', 'deal', 'EUR 40k', 'a quote said on the erased call', 'x', '1', '{1}', 'e1', now())""",
        erased_rows[0]["id"],
    )
    secrets_of_a = [
        meeting["transcript"][0]["text"],
        "k.ashworth-lindqvist@tallowbrook-capital.com",
        "a quote said on the erased call",
        *erased_ids,
        *[str(r["id"]) for r in erased_rows],
    ]
    text_before = pg_dump(database_url) + "".join(
        d.decode(errors="replace") for _, d in await _everything_in_streams(js)
    )
    assert all(s in text_before for s in secrets_of_a[:3])  # the proof below can fail

    request = ErasureRequested(
        erasure_id="er-1",
        scope="integration",
        workspace_id="ws1",
        integration_ids=["int-a"],
        requested_at=datetime.now(UTC),
    )
    await js.publish(ERASURES_REQUESTED, msgspec.json.encode(request))

    async def finished() -> ErasureFinished | None:
        for m in await stream_messages(js, ERASURES, "erasures.finished.normalizer"):
            return msgspec.json.decode(m.data, type=ErasureFinished)
        return None

    report = await wait_until(finished, timeout=60)
    assert report.erasure_id == "er-1"
    counts = report.counts
    assert counts["messages"] == 3
    assert counts["participants"] > 0
    assert counts["contacts"] > 0  # the erased calls' external people named no other call
    assert counts["feature_links"] == 1
    assert counts["data_points"] == 1
    assert counts["raw_events"] == 4  # three purged by subject (the broken one too), the legacy one read
    assert counts["dead_letters"] == 1
    assert counts["message_events"] == 3  # each erased message's MessageUpserted
    assert counts["feature_events"] == 1

    # Every MessageDeleted was announced (by callstream id, no provider call id) before the proof.
    async def announced() -> list[MessageDeleted]:
        events = [
            msgspec.json.decode(m.data, type=MessageDeleted)
            for m in await stream_messages(js, "MESSAGES")
            if m.subject.startswith("messages.deleted.")
        ]
        return events if len(events) == 3 else []

    deleted = await wait_until(announced, timeout=30)
    assert {e.message_id for e in deleted} == {str(r["id"]) for r in erased_rows}
    assert {(e.reason, e.external_id) for e in deleted} == {("erased", None)}

    # The proof: none of A in the database or in any stream (the MessageDeleted ids aside) ...
    dump = pg_dump(database_url)
    events = await _everything_in_streams(js)
    for secret in secrets_of_a[:-3]:
        assert secret not in dump, secret
        for subject, data in events:
            assert secret.encode() not in data, (secret, subject)
    # callstream's own message ids stay where they tell late data points to be dropped, as the
    # MessageDeleted events name them: nowhere else
    kept_ids = [line for line in dump.splitlines() if "normalizer_erased_messages" not in line]
    for message_id in secrets_of_a[-3:]:
        assert not [line for line in kept_ids if message_id in line], message_id
        assert all(
            message_id.encode() not in data for subject, data in events if not subject.startswith("messages.deleted.")
        )
    # ... and all of B still there: its message, people, customer, raw event and upsert.
    assert await _count(pool, "select count(*) from messages where integration_id = 'int-b' and content <> ''") == 1
    assert await _count(pool, "select count(*) from contacts") > 0
    assert await _count(pool, "select count(*) from customers") > 0
    assert kept_id in dump
    assert "teodor.vance@harborline-freight.example" in dump
    assert sum(1 for s, d in events if s == raw_calls_subject("gong", "int-b")) == 1
    assert sum(1 for s, d in events if s == "messages.upserted.gong") == 1

    # A raw call of the erased integration arriving late is never stored; one of B after it is.
    await js.publish(
        raw_calls_subject("fathom", "int-a"), _for(kit.raw_call(kit.fathom_meeting(recording_id=700004)), "int-a")
    )
    later = kit.gong_bundle(1)
    await js.publish(raw_calls_subject("gong", "int-b"), _for(kit.raw_call(later), "int-b"))

    async def b_stored() -> bool:
        return await _count(pool, "select count(*) from messages where integration_id = 'int-b'") == 2

    customers = await _count(pool, "select count(*) from customers")
    await wait_until(b_stored, timeout=30)
    assert await _count(pool, "select count(*) from messages where integration_id = 'int-a'") == 0
    # ... nor is its customer, nor does its transcript stay in the raw stream
    assert await _count(pool, "select count(*) from customers") == customers
    assert not await stream_messages(js, "CALLS_RAW", raw_calls_subject("fathom", "int-a"))

    # The request again (a redelivery after a crash before the report): the same counts.
    again = await erase(pool, js, request)
    assert again.counts == counts


async def _dead_letters(js: Any) -> bool:
    return bool(await stream_messages(js, "DLQ"))


async def test_a_workspace_erasure_takes_what_belongs_to_no_integration_too(pool: Any, nc: Any, kit: Any) -> None:
    js = nc.jetstream()
    await pool.execute("insert into features (workspace_id, id, name) values ('ws1', 'f-9', 'pricing')")
    await pool.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id) values ('ws1', 'f-9', 'fathom', '123')"
    )
    await pool.execute("insert into workspace_settings (workspace_id, message_retention_days) values ('ws1', 30)")
    await pool.execute("insert into features (workspace_id, id, name) values ('ws2', 'f-9', 'kept')")
    request = ErasureRequested(
        erasure_id="er-ws", scope="workspace", workspace_id="ws1", integration_ids=[], requested_at=datetime.now(UTC)
    )
    report = await erase(pool, js, request)
    assert (report.counts["features"], report.counts["feature_links"], report.counts["settings"]) == (1, 1, 1)
    assert await _count(pool, "select count(*) from features") == 1  # ws2's
    stored = await pool.fetchval("select counts from normalizer_erasures where erasure_id = 'er-ws'")
    assert stored == report.counts
    assert await _count(pool, "select count(*) from normalizer_erasures where finished_at is not null") == 1
    assert not await asyncio.wait_for(pool.fetch("select * from normalizer_erasure_items"), 5)


async def test_an_erasure_stopped_halfway_resumes_and_counts_each_thing_once(pool: Any, nc: Any, kit: Any) -> None:
    async with pool.acquire() as conn:
        await store_batch(
            conn, [map_raw_call(kit.raw_call(kit.fathom_meeting(recording_id=800000 + i))) for i in range(5)]
        )
    request = ErasureRequested(
        erasure_id="er-crash",
        scope="integration",
        workspace_id="ws1",
        integration_ids=["int-fathom"],
        requested_at=datetime.now(UTC),
    )
    beats = 0

    async def crash_after_two_batches() -> None:
        nonlocal beats
        beats += 1
        if beats == 2:
            raise ConnectionError("killed")

    with pytest.raises(ConnectionError):
        await erase(pool, nc.jetstream(), request, heartbeat=crash_after_two_batches, batch_size=2)
    assert await _count(pool, "select count(*) from messages") == 1  # two batches of two went
    assert await _count(pool, "select count(*) from normalizer_erasure_items") == 4  # remembered for the streams
    report = await erase(pool, nc.jetstream(), request, batch_size=2)
    assert report.counts["messages"] == 5
    assert await _count(pool, "select count(*) from messages") == 0
    assert await _count(pool, "select count(*) from normalizer_erasure_items") == 0
    deleted = await pool.fetch("select payload from outbox where subject = 'messages.deleted.fathom'")
    assert len(deleted) == 5
    assert await _count(pool, "select count(*) from outbox where subject like 'messages.upserted.%'") == 0
