"""A call's life after it was stored (issue #19, section 1), on real processes and the fake providers.

- Fathom sends no webhook when a meeting is edited and has no ``updated_at`` (fathom.md, addendum):
  the scheduler's Fathom reconciliation re-reads the recent past, so a renamed title, a late
  summary and edited action items arrive, announced as ``updated``, with nothing duplicated.
- Gong re-associates a call with another HubSpot account: the next pull moves the message to the
  new customer, and the old customer no longer counts it.

- A call deleted at the provider becomes a tombstone once a reconciliation lists its window
  completely without it after an earlier one listed it (never while a page fails), announced as ``MessageDeleted``, answered 410
  Gone by the linker; a call made private at Gong is hidden, not deleted.

Time is not waited for: a reconciliation is made due by moving the integration's
``next_reconcile_at`` into the past, which is what the passing of a week does to it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import nats.errors
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
    return {**service_env, "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1", **FAST_RETRIES}


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


async def _stored(db: asyncpg.Connection, workspace: str, count: int) -> bool:
    """The normalizer stored ``count`` messages of the workspace (a run is done when its calls are
    in CALLS_RAW, a moment before they are messages)."""
    return await db.fetchval("select count(*) from messages where workspace_id = $1", workspace) == count


async def _reconcile_now(db: asyncpg.Connection, integration_id: str) -> None:
    """What a week does: the integration's reconciliation falls due."""
    await db.execute(
        "update sync_state set next_reconcile_at = now() - interval '1 second' where integration_id = $1::uuid",
        integration_id,
    )


async def _reconciled(db: asyncpg.Connection, integration_id: str, runs: int = 1) -> bool:
    """The ``runs``-th reconciliation (or a later one) succeeded."""
    rows = await db.fetch(
        "select status from sync_runs where integration_id = $1::uuid and trigger = 'reconcile' order by created_at",
        integration_id,
    )
    assert all(r["status"] != "error" for r in rows), "the reconciliation failed"
    return len(rows) >= runs and rows[-1]["status"] == "success"


async def _listed(db: asyncpg.Connection, workspace: str, count: int) -> bool:
    """A complete listing named ``count`` stored calls of the workspace: only a call listed before is
    judged gone by a later listing without it."""
    return (
        await db.fetchval(
            "select count(*) from messages where workspace_id = $1 and last_listed_at is not null", workspace
        )
        == count
    )


async def test_fathom_reconciliation_brings_edits_made_without_a_webhook(stack: Stack, db: asyncpg.Connection) -> None:
    # Meetings of the last ten days: inside the first sync (14 days) and the reconciled window (14).
    fathom = FathomState(FathomConfig(seed=11, meetings=MEETINGS, span_days=10, **FAST_FATHOM))
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
        await eventually(lambda: _stored(db, "life-fathom", MEETINGS), timeout=15)
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
        await eventually(lambda: _stored(db, "life-gong", 4), timeout=15)
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


# --- deletions at the provider (1c) ------------------------------------------------------------------

FAST_RETRIES = {
    # the fakes here allow 600 (heavy) requests a minute: the runs are not paced to Fathom's real 30
    "CALLSTREAM_GATEWAY_PULL_FATHOM_REQUESTS_PER_WINDOW": "600",
    "CALLSTREAM_GATEWAY_PULL_FATHOM_HEAVY_PER_WINDOW": "600",
    # a failing page is retried at once and often, so the test sees the listing held, then complete
    "CALLSTREAM_GATEWAY_PULL_BACKOFF_INITIAL_SECONDS": "0.1",
    "CALLSTREAM_GATEWAY_PULL_BACKOFF_MAX_SECONDS": "0.2",
    "CALLSTREAM_GATEWAY_PULL_REDELIVER_DELAY_SECONDS": "0.5",
    "CALLSTREAM_GATEWAY_PULL_DEFER_MAX_SECONDS": "0.5",
    "CALLSTREAM_GATEWAY_PULL_BREAKER_ENABLED": "false",
}

FAST_FATHOM: dict[str, Any] = {"requests_per_window": 600, "heavy_per_window": 600}


class Deletions:
    """An internal service listening to MessageDeleted."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url

    async def __aenter__(self) -> Deletions:
        self.nc = await nats.connect(self.nats_url)
        self.sub = await self.nc.jetstream().pull_subscribe(
            "messages.deleted.>", durable="e2e-deletions", stream="MESSAGES"
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.nc.close()

    async def events(self) -> list[dict[str, Any]]:
        try:
            batch = await self.sub.fetch(100, timeout=0.3)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        for msg in batch:
            await msg.ack()
        return [json.loads(msg.data) for msg in batch]


async def _listings(stack: Stack) -> int:
    nc = await nats.connect(stack.nats_url)
    try:
        info = await nc.jetstream().stream_info("CALLS_RAW", subjects_filter="calls.listed.>")
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def _deleted(db: asyncpg.Connection, workspace: str, external_id: str) -> asyncpg.Record | None:
    row = await db.fetchrow(
        "select id, deleted_reason, title, content from messages where workspace_id = $1 and external_id = $2",
        workspace,
        external_id,
    )
    return row if row is not None and row["deleted_reason"] is not None else None


async def test_a_meeting_deleted_at_fathom_is_tombstoned_only_once_a_listing_is_complete(
    stack: Stack, db: asyncpg.Connection
) -> None:
    fathom = FathomState(FathomConfig(seed=13, meetings=8, span_days=10, page_size=5, **FAST_FATHOM))  # two pages
    async with serve_in_process(fathom_app(fathom)) as fathom_url, Deletions(stack.nats_url) as deletions:
        integration_id = await _integration(
            stack,
            "life-gone",
            {
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "base_url": fathom_url + "/external/v1",
            },
        )
        await eventually(lambda: _first_sync_done(db, integration_id), timeout=60, interval=0.5)
        await eventually(lambda: _stored(db, "life-gone", 8), timeout=15)
        # the weekly reconciliation lists them all
        await _reconcile_now(db, integration_id)
        await eventually(lambda: _reconciled(db, integration_id), timeout=60, interval=0.5)
        await eventually(lambda: _listed(db, "life-gone", 8), timeout=15)
        listings = await _listings(stack)
        # a meeting with external people (contacts)
        row = await db.fetchrow(
            "select m.id, m.external_id from messages m where m.workspace_id = 'life-gone'"
            " and exists (select 1 from contact_messages cm where cm.message_id = m.id)"
            " order by m.external_id limit 1"
        )
        gone = int(row["external_id"])
        linker = stack.client("linker")
        assert (await linker.get(f"/v1/messages/{row['id']}")).status_code == 200
        link_params = {"workspace_id": "life-gone", "source": "fathom", "external_id": str(gone)}
        for _ in range(2):  # the second answer comes from the linker's cache
            assert (await linker.get("/v1/links", params=link_params)).status_code == 200

        fathom.delete_meetings([gone])
        # The reconciliation's second page keeps failing: its listing is incomplete.
        fathom.faults.update({"fail_next_cursor": 10_000, "fail_status": 500})
        await _reconcile_now(db, integration_id)

        def failed_pages() -> int:
            return len([e for e in fathom.log.api() if e.status == 500])

        await eventually(lambda: failed_pages() >= 2, timeout=30)
        assert await _listings(stack) == listings
        assert await _deleted(db, "life-gone", str(gone)) is None
        assert (await linker.get(f"/v1/messages/{row['id']}")).status_code == 200

        # The provider answers again: the window is read whole, and only then the meeting is gone.
        fathom.faults.update({"fail_next_cursor": 0})
        await eventually(lambda: _reconciled(db, integration_id, runs=2), timeout=60, interval=0.5)
        tombstone = await eventually(lambda: _deleted(db, "life-gone", str(gone)), timeout=15)
        assert (tombstone["deleted_reason"], tombstone["title"], tombstone["content"]) == ("provider_deleted", None, "")
        assert (
            await db.fetchval("select count(*) from messages where workspace_id = 'life-gone' and deleted_at is null")
            == 7
        )
        assert await db.fetchval("select count(*) from contact_messages where message_id = $1", row["id"]) == 0
        # contact counts follow: every contact counts exactly the live calls naming it
        assert (
            await db.fetchval(
                "select count(*) from contacts c where c.workspace_id = 'life-gone'"
                " and c.call_count <> (select count(*) from contact_messages cm where cm.contact_id = c.id)"
            )
            == 0
        )

        announced = await eventually(deletions.events, timeout=15)
        assert [(e["message_id"], e["external_id"], e["reason"]) for e in announced] == [
            (str(row["id"]), str(gone), "provider_deleted")
        ]
        answer = await linker.get(f"/v1/messages/{row['id']}")
        assert answer.status_code == 410, answer.text
        assert answer.json()["error"] == "gone_provider_deleted"
        link = await linker.get("/v1/links", params=link_params)  # the cache forgot it on MessageDeleted
        assert link.status_code == 410, link.text
        listed = (await linker.get("/v1/messages", params={"workspace_id": "life-gone", "limit": 50})).json()
        assert str(row["id"]) not in [m["id"] for m in listed["items"]]
        assert len(listed["items"]) == 7


async def test_a_private_gong_call_is_not_a_deletion(stack: Stack, db: asyncpg.Connection) -> None:
    gong = GongState(GongConfig(seed=14, calls=4, span_days=5))
    async with serve_in_process(gong_app(gong)) as gong_url, Deletions(stack.nats_url) as deletions:
        integration_id = await _integration(
            stack,
            "life-private",
            {
                "provider": "gong",
                "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                "base_url": gong_url,
            },
        )
        await eventually(lambda: _first_sync_done(db, integration_id), timeout=60, interval=0.5)
        await eventually(lambda: _stored(db, "life-private", 4), timeout=15)
        await _reconcile_now(db, integration_id)  # the weekly reconciliation lists them all
        await eventually(lambda: _reconciled(db, integration_id), timeout=60, interval=0.5)
        await eventually(lambda: _listed(db, "life-private", 4), timeout=15)
        private, deleted = gong.index.ids[1], gong.index.ids[2]
        gong.set_private([private])
        gong.delete_calls([deleted])
        await _reconcile_now(db, integration_id)
        await eventually(lambda: _reconciled(db, integration_id, runs=2), timeout=60, interval=0.5)
        await eventually(lambda: _deleted(db, "life-private", deleted), timeout=15)

        kept = await db.fetchrow(
            "select deleted_at, content, message_metadata ->> 'private' as private from messages"
            " where workspace_id = 'life-private' and external_id = $1",
            private,
        )
        assert kept["deleted_at"] is None
        assert (kept["private"], kept["content"]) == ("true", "")  # withheld, not deleted
        announced = await eventually(deletions.events, timeout=15)
        assert [e["external_id"] for e in announced] == [deleted]
        assert (
            await db.fetchval(
                "select count(*) from messages where workspace_id = 'life-private' and deleted_at is null"
            )
            == 3
        )
