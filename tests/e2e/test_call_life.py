"""A call's life after it was stored (issue #19, section 1), on real processes and the fake providers.

- Fathom sends no webhook when a meeting is edited and has no ``updated_at`` (fathom.md, addendum):
  the scheduler's Fathom reconciliation re-reads the recent past, so a renamed title, a late
  summary and edited action items arrive, announced as ``updated``, with nothing duplicated.
- Gong re-associates a call with another HubSpot account: the next pull moves the message to the
  new customer, and the old customer no longer counts it.

Time is not waited for: a reconciliation is made due by moving the integration's
``next_reconcile_at`` into the past, which is what the passing of a week does to it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app
from tests.fakes.gong._data import Selector, build_call

from .conftest import Stack, Subscriber, eventually

MEETINGS = 6


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    # The due loop ticks every second, so a reconciliation made due starts at once.
    return {**service_env, "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1"}


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.env["CALLSTREAM_DATABASE_URL"])
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        yield conn
    finally:
        await conn.close()


async def _integration(stack: Stack, workspace: str, body: dict[str, Any]) -> str:
    r = await stack.client("gateway").post("/v1/integrations", json={"workspace_id": workspace, **body})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _first_sync_done(db: asyncpg.Connection, integration_id: str) -> bool:
    status = await db.fetchval(
        "select status from sync_runs where integration_id = $1::uuid and trigger = 'schedule' order by created_at limit 1",
        integration_id,
    )
    assert status != "error", "the first sync failed"
    return status == "success"


async def _reconcile_now(db: asyncpg.Connection, integration_id: str) -> None:
    """What a week does: the integration's reconciliation falls due."""
    await db.execute(
        "update sync_state set next_reconcile_at = now() - interval '1 second' where integration_id = $1::uuid",
        integration_id,
    )


async def _reconciled(db: asyncpg.Connection, integration_id: str) -> bool:
    status = await db.fetchval(
        "select status from sync_runs where integration_id = $1::uuid and trigger = 'reconcile' "
        "order by created_at desc limit 1",
        integration_id,
    )
    assert status != "error", "the reconciliation failed"
    return status == "success"


async def test_fathom_reconciliation_brings_edits_made_without_a_webhook(stack: Stack, db: asyncpg.Connection) -> None:
    # Meetings of the last ten days: inside the first sync (14 days) and the reconciled window (14).
    fathom = FathomState(FathomConfig(seed=11, meetings=MEETINGS, span_days=10))
    async with (
        serve_in_process(fathom_app(fathom)) as fathom_url,
        Subscriber(stack.nats_url, durable="e2e-fathom-reconcile") as events,
    ):
        integration_id = await _integration(
            stack,
            "life-fathom",
            {
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "base_url": fathom_url + "/external/v1",
            },
        )
        await eventually(lambda: _first_sync_done(db, integration_id), timeout=60, interval=0.5)
        stored = await db.fetch(
            "select external_id, id, title, version from messages where workspace_id = 'life-fathom' order by external_id"
        )
        assert len(stored) == MEETINGS
        assert await db.fetchval(
            "select next_reconcile_at from sync_state where integration_id = $1::uuid", integration_id
        )

        # At Fathom, after it was stored: renamed, its summary rewritten, its action items edited.
        edited = fathom.index.recording_ids[2]
        fathom.edit_meeting(
            edited,
            title="Renamed after the call",
            default_summary={"template_name": "General", "markdown_formatted": "## Key Takeaways\n- A late summary\n"},
            action_items=[
                {
                    "description": "Send the revised order form",
                    "user_generated": True,
                    "completed": True,
                    "recording_timestamp": "00:01:05",
                    "recording_playback_url": "https://fathom.video/calls/1?timestamp=65",
                    "assignee": {"name": "Ada Lovelace", "email": "ada@quillfern.example", "team": "Sales"},
                }
            ],
        )
        await _reconcile_now(db, integration_id)
        await eventually(lambda: _reconciled(db, integration_id), timeout=60, interval=0.5)

        row = await db.fetchrow(
            "select id, title, version, message_metadata, ai_insights from messages "
            "where workspace_id = 'life-fathom' and external_id = $1",
            str(edited),
        )
        assert row["title"] == "Renamed after the call"
        assert row["version"] == 2
        assert row["message_metadata"]["summary"] == "## Key Takeaways\n- A late summary\n"
        assert [a["text"] for a in row["ai_insights"]["action_items"]] == ["Send the revised order form"]
        assert row["ai_insights"]["key_points"] == ["A late summary"]
        # nothing duplicated, nothing else rewritten
        after = await db.fetch(
            "select external_id, id, version from messages where workspace_id = 'life-fathom' order by external_id"
        )
        assert [(r["external_id"], r["id"]) for r in after] == [(r["external_id"], r["id"]) for r in stored]
        assert {r["external_id"]: r["version"] for r in after if r["external_id"] != str(edited)} == {
            r["external_id"]: 1 for r in stored if r["external_id"] != str(edited)
        }

        async def announced() -> list[dict[str, Any]] | None:
            return [e for e in await events.drain(0.2) if e["change"] == "updated"] or None

        updated = await eventually(announced, timeout=15)
        assert [(e["external_id"], e["version"], e["title"]) for e in updated] == [
            (str(edited), 2, "Renamed after the call")
        ]
        assert sorted(e["external_id"] for e in events.events if e["change"] == "created") == sorted(
            r["external_id"] for r in stored
        )

        # the linker serves the edit
        message = (await stack.client("linker").get(f"/v1/messages/{row['id']}")).json()
        assert message["title"] == "Renamed after the call"


async def _pulled_again(db: asyncpg.Connection, integration_id: str, after: int) -> bool:
    """A scheduled run after the first ``after`` ones finished."""
    rows = await db.fetch(
        "select status from sync_runs where integration_id = $1::uuid and trigger = 'schedule' order by created_at",
        integration_id,
    )
    assert all(r["status"] != "error" for r in rows), "a sync failed"
    return len(rows) > after and rows[after]["status"] == "success"


async def test_gong_call_moves_to_its_new_hubspot_account_on_the_next_lookback(
    stack: Stack, db: asyncpg.Connection
) -> None:
    gong = GongState(GongConfig(seed=12, calls=4, span_days=5))
    async with (
        serve_in_process(gong_app(gong)) as gong_url,
        Subscriber(stack.nats_url, durable="e2e-gong-crm") as events,
    ):
        integration_id = await _integration(
            stack,
            "life-gong",
            {
                "provider": "gong",
                "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                "base_url": gong_url,
            },
        )
        await eventually(lambda: _first_sync_done(db, integration_id), timeout=60, interval=0.5)
        call_id = gong.index.ids[-1]  # the newest call: inside the next run's 3-day lookback
        before = await db.fetchrow(
            "select m.id, m.customer_id, c.domain from messages m join customers c on c.id = m.customer_id "
            "where m.workspace_id = 'life-gong' and m.external_id = $1",
            call_id,
        )
        assert before is not None
        linker = stack.client("linker")
        old = (await linker.get(f"/v1/customers/{before['customer_id']}")).json()
        assert old["message_count"] >= 1

        gong.change_crm(call_id)  # in HubSpot, the call now belongs to another account
        moved = build_call(
            gong.index,
            len(gong.index.ids) - 1,
            Selector(context="Extended", timings=("Now",), parties=True),
            host=gong.config.app_host,
        )
        fields = {f["name"]: f["value"] for f in moved["context"][0]["objects"][0]["fields"]}
        assert fields["domain"] != before["domain"]

        # the next hourly run (its lookback re-reads the call), made due now
        await db.execute("update sync_state set next_due_at = now() where integration_id = $1::uuid", integration_id)
        await eventually(lambda: _pulled_again(db, integration_id, 1), timeout=60, interval=0.5)

        after = await db.fetchrow(
            "select m.id, m.customer_id, m.version, c.domain, c.name, c.external_system from messages m "
            "join customers c on c.id = m.customer_id where m.workspace_id = 'life-gong' and m.external_id = $1",
            call_id,
        )
        assert after["id"] == before["id"]
        assert (after["domain"], after["name"], after["external_system"]) == (
            fields["domain"],
            fields["name"],
            "hubspot",
        )
        assert after["version"] == 2
        assert await db.fetchval("select count(*) from messages where workspace_id = 'life-gong'") == 4

        # the old customer no longer counts it, the new one does
        old_now = (await linker.get(f"/v1/customers/{before['customer_id']}")).json()
        assert old_now["message_count"] == old["message_count"] - 1
        assert str(before["id"]) not in [m["id"] for m in old_now["messages"]]
        new = (await linker.get(f"/v1/customers/{after['customer_id']}")).json()
        assert str(after["id"]) in [m["id"] for m in new["messages"]]
        message = (await linker.get(f"/v1/messages/{after['id']}")).json()
        assert message["customer"]["domain"] == fields["domain"]

        async def announced() -> list[dict[str, Any]] | None:
            return [e for e in await events.drain(0.2) if e["change"] == "updated"] or None

        updated = await eventually(announced, timeout=15)
        assert [(e["external_id"], e["customer_id"]) for e in updated] == [(call_id, str(after["customer_id"]))]
