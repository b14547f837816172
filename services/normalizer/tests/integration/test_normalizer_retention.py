"""Workspace retention (issue #19, 3) on real PostgreSQL and NATS: messages older than their
workspace's retention become tombstones with reason ``retention`` and a ``MessageDeleted``; other
workspaces and newer messages are untouched; the admin API sets it, a real process applies it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
from normalizer_itkit import NormalizerProcess, wait_until

from callstream.contracts import MESSAGES, MessageDeleted
from callstream.normalizer._mapping import map_raw_call
from callstream.normalizer._retention import apply_retention, set_retention
from callstream.normalizer._store import store_batch

TOKEN = "normalizer-admin-token-for-tests-0123456789"
NOW = datetime.now(UTC).replace(microsecond=0)


def meeting(kit, recording_id: int, days_ago: int) -> dict:
    started = NOW - timedelta(days=days_ago)
    return kit.fathom_meeting(
        recording_id=recording_id,
        recording_start_time=started.isoformat().replace("+00:00", "Z"),
        recording_end_time=(started + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
    )


async def store_calls(pool, kit) -> None:
    raws = [
        kit.raw_call(meeting(kit, 1, days_ago=40), workspace_id="ws1"),  # expired in ws1
        kit.raw_call(meeting(kit, 2, days_ago=10), workspace_id="ws1"),  # within ws1's 30 days
        kit.raw_call(meeting(kit, 3, days_ago=400), workspace_id="ws2"),  # ws2 keeps everything
    ]
    async with pool.acquire() as conn:
        await store_batch(conn, [map_raw_call(raw) for raw in raws])


async def states(pool) -> dict[tuple[str, str], tuple[str | None, str]]:
    rows = await pool.fetch("select workspace_id, external_id, deleted_reason, content from messages")
    return {(r["workspace_id"], r["external_id"]): (r["deleted_reason"], r["content"][:10]) for r in rows}


async def test_expired_messages_of_a_workspace_with_retention_become_tombstones(pool, kit):
    await store_calls(pool, kit)
    assert (await apply_retention(pool, NOW)).tombstoned == {}  # no workspace has a retention yet
    await set_retention(pool, "ws1", 30)

    report = await apply_retention(pool, NOW, batch_size=1)  # batches of one: the loop goes on
    assert report.tombstoned == {"ws1": 1}
    after = await states(pool)
    assert after[("ws1", "1")] == ("retention", "")
    assert after[("ws1", "2")][0] is None
    assert after[("ws1", "2")][1]
    assert after[("ws2", "3")][0] is None
    assert after[("ws2", "3")][1]
    rows = await pool.fetch("select subject, payload from outbox where subject like 'messages.deleted.%'")
    [event] = [msgspec.json.decode(r["payload"], type=MessageDeleted) for r in rows]
    assert (event.workspace_id, event.external_id, event.reason) == ("ws1", "1", "retention")

    assert (await apply_retention(pool, NOW)).tombstoned == {}  # idempotent: nothing new, no event
    await set_retention(pool, "ws1", None)  # keep for ever again
    assert (await apply_retention(pool, NOW + timedelta(days=30))).tombstoned == {}
    assert await pool.fetchval("select count(*) from outbox where subject like 'messages.deleted.%'") == 1


def call(port: int, method: str, path: str, body: object = None, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = json.dumps(body).encode() if body is not None else None
    response = httpx.request(method, f"http://127.0.0.1:{port}{path}", content=content, headers=headers, timeout=5)
    return response.status_code, response.json()


async def test_the_admin_api_sets_retention_and_the_process_applies_it(
    database_url, nats_url, nc, pool, kit, tmp_path, normalizer_processes
):
    await store_calls(pool, kit)
    process = NormalizerProcess(
        database_url,
        nats_url,
        tmp_path / "n.log",
        CALLSTREAM_NORMALIZER_ADMIN_TOKEN=TOKEN,
        CALLSTREAM_NORMALIZER_RETENTION_SECONDS="0.5",
    ).start()
    normalizer_processes.append(process)
    path = "/v1/workspaces/ws1/retention"

    assert call(process.port, "GET", path, token=None)[0] == 401
    assert call(process.port, "GET", path, token="x" * 40)[0] == 401
    assert call(process.port, "PUT", path, {"message_retention_days": 30}, token=None)[0] == 401
    for bad in ({"message_retention_days": 0}, {"retention": 30}, {}, {"message_retention_days": "30"}):
        status, error = call(process.port, "PUT", path, bad)
        assert (status, error["error"]) == (400, "bad_request"), bad
    assert call(process.port, "PUT", "/v1/workspaces/ws%20one/retention", {"message_retention_days": 3})[0] == 400
    assert call(process.port, "GET", path) == (
        200,
        {"workspace_id": "ws1", "message_retention_days": None, "updated_at": None},
    )
    assert (await states(pool))[("ws1", "1")][0] is None  # nothing erased while unset

    status, view = call(process.port, "PUT", path, {"message_retention_days": 30})
    assert (status, view["message_retention_days"]) == (200, 30)
    assert call(process.port, "GET", path)[1]["message_retention_days"] == 30

    async def erased() -> bool:
        return (await states(pool))[("ws1", "1")][0] == "retention"

    await wait_until(erased, timeout=15)
    # announced on MESSAGES by the outbox relay, once
    js = nc.jetstream()
    sub = await js.pull_subscribe("messages.deleted.>", stream=MESSAGES)
    msgs = await sub.fetch(10, timeout=5)
    deleted = [msgspec.json.decode(m.data, type=MessageDeleted) for m in msgs]
    assert [(d.workspace_id, d.external_id, d.reason) for d in deleted] == [("ws1", "1", "retention")]
    await asyncio.sleep(1.2)  # two more runs of the job: nothing else goes
    after = await states(pool)
    assert after[("ws1", "2")][0] is None
    assert after[("ws2", "3")][0] is None


async def test_a_message_observed_after_now_does_not_hold_the_pass(pool, kit):
    """A gateway's clock ahead of the normalizer's: the tombstone rule leaves a message observed
    after ``now`` alone, and the pass must end rather than select it again and again."""
    ahead = NOW + timedelta(hours=1)
    raws = [kit.raw_call(meeting(kit, 10 + i, days_ago=40), workspace_id="ws1", received_at=ahead) for i in range(3)]
    async with pool.acquire() as conn:
        await store_batch(conn, [map_raw_call(raw) for raw in raws])
    await set_retention(pool, "ws1", 30)
    report = await asyncio.wait_for(apply_retention(pool, NOW, batch_size=2), timeout=10)
    assert report.tombstoned == {}
    assert (await apply_retention(pool, ahead + timedelta(seconds=1))).tombstoned == {"ws1": 3}


async def test_a_later_pull_does_not_bring_a_retention_tombstone_back(pool, kit):
    """The provider still has the call: the next lookback or reconciliation delivers it again,
    observed after the tombstone. It stays a tombstone, and nothing is announced."""
    old = meeting(kit, 1, days_ago=40)
    async with pool.acquire() as conn:
        await store_batch(conn, [map_raw_call(kit.raw_call(old, workspace_id="ws1"))])
    await set_retention(pool, "ws1", 30)
    assert (await apply_retention(pool, NOW)).tombstoned == {"ws1": 1}
    events_before = await pool.fetchval("select count(*) from outbox")
    later = NOW + timedelta(hours=1)
    async with pool.acquire() as conn:
        written = await store_batch(conn, [map_raw_call(kit.raw_call(old, workspace_id="ws1", received_at=later))])
    assert written == []
    assert (await states(pool))[("ws1", "1")] == ("retention", "")
    assert await pool.fetchval("select count(*) from outbox") == events_before
