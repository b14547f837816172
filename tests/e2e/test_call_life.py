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
