"""Disconnect with erasure (issue #19, section 2), on the four services as real processes, the fake
Fathom and Gong servers, real PostgreSQL and JetStream.

Two integrations share a workspace: Fathom (A) and Gong (B), both synced. ``DELETE
/v1/integrations/{A}?erase=true`` starts a job that each service takes its part of; once the job
says ``done``, a ``pg_dump`` of the whole database and a read of every event in every stream hold
none of A's transcript sentences, emails, recording ids or message ids (the ``MessageDeleted``
announcements aside, which name messages by callstream id only), all of B is there, the linker
answers 404 for A's messages, and a webhook for A is 404 and stored nowhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest
from nats.js.errors import NotFoundError

from callstream.contracts import STREAMS
from callstream.devstack import pg_dump
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

from .conftest import Stack, eventually, fathom_meeting, signed_headers

WORKSPACE = "erase-ws"
FAST = {
    "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1",
    "CALLSTREAM_GATEWAY_PULL_FATHOM_REQUESTS_PER_WINDOW": "600",
    "CALLSTREAM_GATEWAY_PULL_FATHOM_HEAVY_PER_WINDOW": "600",
}


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, **FAST}


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.env["CALLSTREAM_DATABASE_URL"])
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        yield conn
    finally:
        await conn.close()


async def _synced(db: asyncpg.Connection, integration_id: str, count: int) -> bool:
    status = await db.fetchval(
        "select status from sync_runs where integration_id = $1::uuid order by created_at limit 1", integration_id
    )
    assert status != "error", "the first sync failed"
    stored = await db.fetchval("select count(*) from messages where integration_id = $1", integration_id)
    return status == "success" and stored == count


async def _traces(db: asyncpg.Connection, integration_id: str) -> dict[str, list[str]]:
    """What of an integration's calls must go with it: a sentence of each transcript, the emails of
    the people, the provider's call ids and callstream's message ids."""
    rows = await db.fetch("select id, external_id, content from messages where integration_id = $1", integration_id)
    emails = await db.fetch(
        "select distinct p.email from message_participants p join messages m on m.id = p.message_id"
        " where m.integration_id = $1 and p.email is not null",
        integration_id,
    )
    return {
        "sentences": [r["content"][:60] for r in rows if len(r["content"]) >= 60],
        "emails": [r["email"] for r in emails],
        "call_ids": [r["external_id"] for r in rows],
        "message_ids": [str(r["id"]) for r in rows],
    }


async def _every_event(nats_url: str) -> list[tuple[str, bytes]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        out: list[tuple[str, bytes]] = []
        for spec in STREAMS:
            info = await js.stream_info(spec.name)
            if not info.state.messages:
                continue
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(spec.name, seq)
                except NotFoundError:
                    continue
                out.append((msg.subject, bytes(msg.data or b"")))
        return out
    finally:
        await nc.close()


async def test_erasing_one_of_two_integrations_leaves_nothing_of_it_and_all_of_the_other(
    stack: Stack, db: asyncpg.Connection
) -> None:
    fathom = FathomState(FathomConfig(seed=21, meetings=6, span_days=10, requests_per_window=600, heavy_per_window=600))
    gong = GongState(GongConfig(seed=22, calls=4, span_days=5))
    gateway, linker = stack.client("gateway"), stack.client("linker")
    async with serve_in_process(fathom_app(fathom)) as fathom_url, serve_in_process(gong_app(gong)) as gong_url:
        secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3"
        created = await gateway.post(
            "/v1/integrations",
            json={
                "workspace_id": WORKSPACE,
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "webhook_secret": secret,
                "base_url": fathom_url + "/external/v1",
            },
        )
        assert created.status_code == 201, created.text
        a = created.json()["id"]
        created = await gateway.post(
            "/v1/integrations",
            json={
                "workspace_id": WORKSPACE,
                "provider": "gong",
                "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                "base_url": gong_url,
            },
        )
        assert created.status_code == 201, created.text
        b = created.json()["id"]
        await eventually(lambda: _synced(db, a, 6), timeout=90, interval=0.5)
        await eventually(lambda: _synced(db, b, 4), timeout=90, interval=0.5)

        of_a, of_b = await _traces(db, a), await _traces(db, b)
        for traces in (of_a, of_b):
            assert traces["sentences"], traces
            assert traces["emails"], traces
        before = pg_dump(stack.env["CALLSTREAM_DATABASE_URL"])
        assert of_a["sentences"][0] in before  # the proof below can fail
        assert of_a["emails"][0] in before
        a_message = of_a["message_ids"][0]
        assert (await linker.get(f"/v1/messages/{a_message}")).status_code == 200

        answer = await gateway.delete(f"/v1/integrations/{a}", params={"erase": "true"})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        again = await gateway.delete(f"/v1/integrations/{a}", params={"erase": "true"})
        assert again.status_code == 202, again.text
        assert again.json()["erasure_id"] == job["erasure_id"]  # the same job, not a second one

        async def done() -> dict[str, Any] | None:
            state = (await gateway.get(f"/v1/erasures/{job['erasure_id']}")).json()
            return state if state["status"] == "done" else None

        state = await eventually(done, timeout=90, interval=0.5)
        assert set(state["parts"]) == {"gateway", "normalizer", "scheduler"}
        assert state["counts"]["messages"] == 6
        assert state["counts"]["raw_events"] >= 6
        assert state["counts"]["sync_runs"] >= 1

        # The proof: nothing of A in the database or in any stream ...
        dump = pg_dump(stack.env["CALLSTREAM_DATABASE_URL"])
        events = await _every_event(stack.nats_url)
        for kind in ("sentences", "emails", "call_ids"):
            for text in of_a[kind]:
                assert text not in dump, (kind, text)
                hits = [subject for subject, data in events if text.encode() in data]
                assert not hits, (kind, text, hits)
        # callstream's own message ids stay where they tell late data points to be dropped (the
        # MessageDeleted events name them too): nowhere else
        rest = [line for line in dump.splitlines() if "normalizer_erased_messages" not in line]
        for message_id in of_a["message_ids"]:
            assert not [line for line in rest if message_id in line], message_id
            hits = [s for s, d in events if message_id.encode() in d and not s.startswith("messages.deleted.")]
            assert not hits, (message_id, hits)
        # ... all of B there: every call with its transcript and people, in the database and the streams.
        for kind in ("sentences", "emails", "call_ids", "message_ids"):
            for text in of_b[kind]:
                assert text in dump, (kind, text)
        for call_id in of_b["call_ids"]:
            assert any(call_id.encode() in data for subject, data in events if subject.startswith("calls.raw.gong."))
        assert (await linker.get(f"/v1/messages/{of_b['message_ids'][0]}")).status_code == 200

        # The linker knows nothing of A; a webhook for A is refused and stored nowhere.
        assert (await linker.get(f"/v1/messages/{a_message}")).status_code == 404
        body = json.dumps(fathom_meeting(987654321)).encode()
        refused = await stack.client("gateway").post(
            f"/v1/webhooks/fathom/{a}", content=body, headers=signed_headers(secret, body, "msg_after_erasure")
        )
        assert refused.status_code == 404, refused.text
        assert not [s for s, d in await _every_event(stack.nats_url) if b"987654321" in d]
        integration = (await gateway.get(f"/v1/integrations/{a}")).json()
        assert integration["status"] == "erased"
