"""Re-derivation (#22 item 1, "every stored message gets the new shape"): rows stored by the mapping
before #22 (examples/stored_before_22.json, made by that mapping from the examples in the same
folder) are brought to the current shape from the raw data they keep, on real PostgreSQL, and
announced as ``MessageUpserted`` ``updated`` through the outbox on real JetStream: in process, by the
``rederive`` command, and by the running service on its own."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime

import msgspec
from normalizer_itkit import NORMALIZER, NormalizerProcess, stream_messages, upserted, wait_until

from callstream.contracts import MESSAGES
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._outbox import publish_pending
from callstream.normalizer._rederive import REDERIVE_LOCK, raw_call_of, rederive
from callstream.normalizer._store import store_batch

INSERT = """
insert into messages (workspace_id, source, external_id, integration_id, title, content, channel_name, channel_id,
    author_name, author_id, author_email, sent_at, message_metadata, ai_insights, content_hash, source_updated_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, $15, $16)
returning id
"""


def old_rows(kit):
    return kit.example("stored_before_22.json")["rows"]


def original_raw(kit, example):
    """The raw event each stored row was mapped from."""
    return {
        "fathom_webhook": lambda: kit.raw_call(kit.fathom_meeting()),
        "gong_call_0": lambda: kit.raw_call(kit.gong_bundle(0)),
        "gong_call_1": lambda: kit.raw_call(kit.gong_bundle(1)),
    }[example]()


async def insert_old_rows(pool, kit, rows=None):
    ids = {}
    for r in rows or old_rows(kit):
        ids[r["example"]] = await pool.fetchval(
            INSERT,
            r["workspace_id"],
            r["source"],
            r["external_id"],
            r["integration_id"],
            r["title"],
            r["content"],
            r["channel_name"],
            r["channel_id"],
            r["author_name"],
            r["author_id"],
            r["author_email"],
            datetime.fromisoformat(r["sent_at"]) if r["sent_at"] else None,
            r["message_metadata"],  # the pool's codec encodes jsonb
            r["ai_insights"],
            r["content_hash"],
            datetime.fromisoformat(r["observed_at"]),
        )
        for position, (name, email, affiliation, speaker_id, role) in enumerate(r["participants"]):
            await pool.execute(
                "insert into message_participants (message_id, position, name, email, affiliation, speaker_id, role)"
                " values ($1, $2, $3, $4, $5, $6, $7)",
                ids[r["example"]],
                position,
                name,
                email,
                affiliation,
                speaker_id,
                role,
            )
    return ids


async def relay_all(pool, nc):
    js = nc.jetstream()
    async with pool.acquire() as conn:
        while await publish_pending(conn, js, 500):
            pass
    return upserted(await stream_messages(js, MESSAGES))


async def test_stored_rows_of_the_old_shape_get_the_new_one_and_are_announced(pool, nc, kit):
    ids = await insert_old_rows(pool, kit)
    old = await pool.fetchval("select message_metadata from messages where id = $1", ids["gong_call_0"])
    assert old["hubspot_context"]["accounts"][0]["id"] == "21877340012"  # the shape before #22
    assert isinstance(old["participants"][0], dict)

    report = await rederive(pool)
    assert (report.read, report.rederived, report.unchanged, report.without_raw, report.unmappable) == (3, 3, 0, 0, 0)

    for example, message_id in ids.items():
        row = await pool.fetchrow("select * from messages where id = $1", message_id)
        now = map_raw_call(original_raw(kit, example))  # what a delivery maps to today
        assert row["message_metadata"] == msgspec.json.decode(now.metadata_json), example
        assert row["ai_insights"] == (msgspec.json.decode(now.ai_insights_json) if now.ai_insights_json else None)
        assert row["content"] == now.content
        assert row["version"] == 2
    gong = await pool.fetchval("select message_metadata from messages where id = $1", ids["gong_call_0"])
    assert gong["participants"] == ["Maren Okafor", "Teodor Vance", "Ines Halloway"]
    assert gong["hubspot_context"]["accounts"][0]["object_id"] == "21877340012"
    assert gong["talk_time"]["external_share"] > 0
    # the customer and the contacts follow the store, as for a delivery
    assert (
        await pool.fetchval(
            "select c.external_id from messages m join customers c on c.id = m.customer_id where m.id = $1",
            ids["gong_call_0"],
        )
        == "21877340012"
    )
    assert await pool.fetchval("select count(*) from contacts") == 5
    assert await pool.fetchval("select max(call_count) from contacts") == 1

    events = await relay_all(pool, nc)
    assert sorted((e.message_id, e.change, e.version) for e in events) == sorted(
        (str(i), "updated", 2) for i in ids.values()
    )

    # again: nothing left of the old shape, nothing written, nothing announced
    again = await rederive(pool)
    assert (again.read, again.rederived) == (0, 0)
    assert len(await relay_all(pool, nc)) == 3
    # a delivery of the same call afterwards never counts it twice for its contacts
    async with pool.acquire() as conn:
        await store_batch(conn, [map_raw_call(original_raw(kit, "gong_call_0"))])
    assert await pool.fetchval("select max(call_count) from contacts") == 1


async def test_a_newer_version_stored_meanwhile_is_never_overwritten(pool, kit):
    """The job writes with the time the row it read was observed at: when a newer delivery landed
    between its read and its write, the store's "never older" rule keeps the newer one."""
    [row] = [r for r in old_rows(kit) if r["example"] == "fathom_webhook"]
    ids = await insert_old_rows(pool, kit, [row])
    read = await pool.fetchrow(_READ, ids["fathom_webhook"])  # what the job read
    await pool.execute(  # a newer delivery (of a replica of the previous release) lands
        "update messages set source_updated_at = source_updated_at + interval '1 minute', title = 'Newer'"
        " where id = $1",
        ids["fathom_webhook"],
    )
    async with pool.acquire() as conn:
        assert await store_batch(conn, [map_raw_call(raw_call_of(read))]) == []
    assert await pool.fetchval("select title from messages where id = $1", ids["fathom_webhook"]) == "Newer"


_READ = (
    "select id, workspace_id, source, external_id, integration_id, source_updated_at as observed_at,"
    " (message_metadata -> 'raw_call_data')::text as raw_call,"
    " (message_metadata -> 'transcript_data')::text as transcript,"
    " (message_metadata -> 'raw_session_data')::text as raw_session from messages where id = $1"
)


async def test_rows_without_raw_data_are_left_and_reported(pool, kit):
    [row] = [r for r in old_rows(kit) if r["example"] == "fathom_webhook"]
    row = {**row, "message_metadata": {k: v for k, v in row["message_metadata"].items() if k != "raw_session_data"}}
    await insert_old_rows(pool, kit, [row])
    report = await rederive(pool)
    assert (report.read, report.without_raw, report.rederived) == (1, 1, 0)
    assert await pool.fetchval("select version from messages") == 1


async def test_rows_it_cannot_rederive_are_read_once_per_process(pool, kit):
    """The periodic job does not read (and map, and warn about) the same rows every few minutes
    for ever: what a run could not re-derive is left alone by the process's later runs (a new
    process, e.g. after a fix is deployed, tries them again)."""
    [row] = [r for r in old_rows(kit) if r["example"] == "fathom_webhook"]
    row = {**row, "message_metadata": {k: v for k, v in row["message_metadata"].items() if k != "raw_session_data"}}
    await insert_old_rows(pool, kit, [row])
    left: set = set()
    assert (await rederive(pool, left=left)).without_raw == 1
    assert (await rederive(pool, left=left)).read == 0
    assert (await rederive(pool)).read == 1  # another process


async def test_one_replica_at_a_time(pool, kit):
    await insert_old_rows(pool, kit)
    async with pool.acquire() as holder:
        await holder.execute("select pg_advisory_lock($1)", REDERIVE_LOCK)
        try:
            assert (await rederive(pool)).busy is True
        finally:
            await holder.execute("select pg_advisory_unlock($1)", REDERIVE_LOCK)
    assert (await rederive(pool, batch=2)).rederived == 3  # over two batches


def cli(*args: str, database_url: str, nats_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLSTREAM_DATABASE_URL": database_url, "CALLSTREAM_NATS_URL": nats_url}
    return subprocess.run([str(NORMALIZER), *args], env=env, capture_output=True, text=True, timeout=60)


async def test_the_rederive_command(pool, kit, database_url, nats_url):
    await insert_old_rows(pool, kit)
    done = cli("rederive", database_url=database_url, nats_url=nats_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["read"], report["rederived"], report["busy"]) == (3, 3, False)
    again = json.loads(cli("rederive", database_url=database_url, nats_url=nats_url).stdout.strip().splitlines()[-1])
    assert again["read"] == 0


async def test_the_running_service_rederives_on_its_own(
    pool, nc, kit, database_url, nats_url, tmp_path, normalizer_processes
):
    ids = await insert_old_rows(pool, kit)
    process = NormalizerProcess(
        database_url, nats_url, tmp_path / "n.log", CALLSTREAM_NORMALIZER_REDERIVE_SECONDS="0.5"
    ).start()
    normalizer_processes.append(process)
    js = nc.jetstream()

    async def announced():
        events = upserted(await stream_messages(js, MESSAGES))
        return events if len(events) >= 3 else None

    events = await wait_until(announced, timeout=30)
    assert sorted((e.message_id, e.change) for e in events) == sorted((str(i), "updated") for i in ids.values())
    assert await pool.fetchval("select count(*) from messages where message_metadata ? 'metadata_version'") == 3
