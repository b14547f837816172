"""The scheduler's batch reads for the console's overview (issue #18, bench/console): every
integration's sync state in one answer (``GET /v1/sync-state`` naming no workspace) and many
integrations' health in one answer (``GET /v1/health?integration_id=...``), each the admin token's
alone, each answering what the per-workspace and per-integration routes answer."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import asyncpg
import httpx
from scheduler_kit import ADMIN_TOKEN, FakeClock, add_integration

from callstream.contracts import hash_api_token

TOKEN = ADMIN_TOKEN
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


async def _manager(pool: asyncpg.Pool, workspaces: list[str]) -> dict[str, str]:
    token = "cst_" + secrets.token_urlsafe(32)
    await pool.execute(
        "insert into api_tokens (id, name, token_hash, workspace_ids, scopes) values ($1, 't', $2, $3, $4)",
        uuid.uuid4(),
        hash_api_token(token),
        workspaces,
        ["read", "manage"],
    )
    return {"Authorization": f"Bearer {token}"}


async def test_every_integrations_sync_state_in_one_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    a = await add_integration(pool, "gong", workspace_id="ws-a", parked_until=clock.now() + DAY)
    # Each with a state already (parked): the due loop running alongside makes none between two reads.
    b = await add_integration(pool, "fathom", workspace_id="ws-b", status="reauth_required", parked_until=clock.now())
    await add_integration(pool, "fathom", workspace_id="ws-b", status="erased")

    everything = await client.get("/v1/sync-state", headers=ADMIN)
    assert everything.status_code == 200, everything.text
    by_id = {s["integration_id"]: s for s in everything.json()}
    assert set(by_id) == {str(a), str(b)}  # the erased one is left out, as per workspace
    per_workspace = [
        s
        for w in ("ws-a", "ws-b")
        for s in (await client.get(f"/v1/sync-state?workspace_id={w}", headers=ADMIN)).json()
    ]
    assert {s["integration_id"]: s for s in per_workspace} == by_id

    # A workspace's manage token names its workspace; asking for everything is the operator's.
    manager = await _manager(pool, ["ws-a"])
    refused = await client.get("/v1/sync-state", headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    assert (await client.get("/v1/sync-state", headers={})).status_code == 401


async def test_many_integrations_health_in_one_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    fathom = await add_integration(pool, "fathom", workspace_id="ws-a", parked_until=clock.now() + DAY)
    gong = await add_integration(pool, "gong", workspace_id="ws-b", status="reauth_required", parked_until=clock.now())
    erased = await add_integration(pool, "gong", workspace_id="ws-b", status="erased")
    unknown = uuid.uuid4()

    asked = [gong, unknown, fathom, erased, gong]
    answer = await client.get("/v1/health", params=[("integration_id", str(i)) for i in asked], headers=ADMIN)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    # In the order asked, each once; the unknown and the erased left out.
    assert [h["integration_id"] for h in items] == [str(gong), str(fathom)]
    for item in items:
        one = await client.get(f"/v1/integrations/{item['integration_id']}/health", headers=ADMIN)
        assert one.json() == item
    assert not items[0]["healthy"]
    assert {c["name"] for c in items[0]["checks"] if not c["ok"]} >= {"connected", "credentials_valid"}

    none = await client.get("/v1/health", headers=ADMIN)
    assert none.status_code == 400
    too_many = await client.get("/v1/health", params=[("integration_id", str(uuid.uuid4()))] * 501, headers=ADMIN)
    assert too_many.status_code == 400
    bad = await client.get("/v1/health", params={"integration_id": "not-a-uuid"}, headers=ADMIN)
    assert bad.status_code == 400

    manager = await _manager(pool, ["ws-a"])
    refused = await client.get("/v1/health", params={"integration_id": str(fathom)}, headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    # Naming its own workspace beside the ids does not open it: this route reads no workspace, so
    # the one named was never the one served (the guard passed it, and ws-b's health leaked).
    for params in (
        [("integration_id", str(gong)), ("workspace_id", "ws-a")],
        [("integration_id", str(fathom)), ("workspace_id", "ws-a")],
    ):
        leaked = await client.get("/v1/health", params=params, headers=manager)
        assert (leaked.status_code, leaked.json()["error"]) == (403, "admin_only"), leaked.text


async def _set_state(pool: asyncpg.Pool, integration_id: uuid.UUID, status: str, failures: int = 0) -> None:
    await pool.execute(
        "update sync_state set status = $2, consecutive_failures = $3 where integration_id = $1",
        integration_id,
        status,
        failures,
    )


async def _running(
    pool: asyncpg.Pool, integration_id: uuid.UUID, clock: FakeClock, moved_minutes_ago: int
) -> uuid.UUID:
    """A run going for three hours that last moved ``moved_minutes_ago``."""
    run_id = uuid.uuid4()
    await pool.execute(
        """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at,
                                  started_at, last_progress_at)
           select $1, id, workspace_id, provider, 'backfill', 'manual', 'running', $3, $3, $4
           from integrations where id = $2""",
        run_id,
        integration_id,
        clock.now() - timedelta(hours=3),
        clock.now() - timedelta(minutes=moved_minutes_ago),
    )
    return run_id


async def test_a_page_of_integrations_sync_states_by_id(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    """The console's list asks for the states of the page it shows, not every state."""
    later = clock.now() + DAY
    a = await add_integration(pool, "gong", workspace_id="ws-a", parked_until=later)
    b = await add_integration(pool, "fathom", workspace_id="ws-b", parked_until=later)
    c = await add_integration(pool, "fathom", workspace_id="ws-b", parked_until=later)
    erased = await add_integration(pool, "gong", workspace_id="ws-b", status="erased")

    asked = [("integration_id", str(i)) for i in (c, a, erased, uuid.uuid4())]
    answer = await client.get("/v1/sync-state", params=asked, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert {s["integration_id"] for s in answer.json()} == {str(a), str(c)}
    # With a workspace too, both apply: what a manage token of ws-a may ask names its own only.
    manager = await _manager(pool, ["ws-a"])
    scoped = await client.get("/v1/sync-state", params=[*asked, ("workspace_id", "ws-a")], headers=manager)
    assert scoped.status_code == 200, scoped.text
    assert [s["integration_id"] for s in scoped.json()] == [str(a)]
    refused = await client.get("/v1/sync-state", params=[("integration_id", str(b))], headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    too_many = await client.get("/v1/sync-state", params=[("integration_id", str(a))] * 501, headers=ADMIN)
    assert too_many.status_code == 400
    bad = await client.get("/v1/sync-state", params={"integration_id": "nope"}, headers=ADMIN)
    assert bad.status_code == 400


async def test_the_summary_counts_every_integration_and_lists_those_that_need_a_person(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    later = clock.now() + DAY
    healthy = [await add_integration(pool, "fathom", workspace_id=f"ws-{k}", parked_until=later) for k in range(3)]
    for key in healthy:
        await _set_state(pool, key, "success")
    failing = await add_integration(pool, "gong", workspace_id="ws-f", parked_until=later)
    await _set_state(pool, failing, "error", failures=3)
    failing_once = await add_integration(pool, "gong", workspace_id="ws-f", parked_until=later)
    await _set_state(pool, failing_once, "error", failures=1)
    syncing = await add_integration(pool, "fathom", workspace_id="ws-s", parked_until=later)
    await _set_state(pool, syncing, "syncing")
    await _running(pool, syncing, clock, moved_minutes_ago=5)  # moving: no one's concern
    stuck = await add_integration(pool, "gong", workspace_id="ws-s", parked_until=later)
    await _set_state(pool, stuck, "syncing")
    stuck_run = await _running(pool, stuck, clock, moved_minutes_ago=170)  # past the 2 h bound
    refused = await add_integration(pool, "fathom", workspace_id="ws-r", status="reauth_required", parked_until=later)
    await _set_state(pool, refused, "success")
    disabled = await add_integration(pool, "gong", workspace_id="ws-d", status="disabled", parked_until=later)
    await _set_state(pool, disabled, "error", failures=2)  # disabled: nobody needs to look at its runs
    await add_integration(pool, "gong", workspace_id="ws-e", status="erased")
    await add_integration(pool, "fathom", workspace_id="ws-n", parked_until=later)  # never synced

    answer = await client.get("/v1/sync-summary", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    counts = {(c["provider"], c["integration_status"], c["status"]): c["count"] for c in body["counts"]}
    assert counts == {
        ("fathom", "active", "success"): 3,
        ("fathom", "active", "syncing"): 1,
        ("gong", "active", "syncing"): 1,
        ("fathom", "active", "pending"): 1,
        ("fathom", "reauth_required", "reauth_required"): 1,
        ("gong", "active", "error"): 2,
        ("gong", "disabled", "error"): 1,
    }
    listed = [a["state"]["integration_id"] for a in body["attention"]]
    # Reconnect and stuck first (few, and never hidden behind a page of failing ones), then the most
    # failures first.
    assert listed == [str(refused), str(stuck), str(failing), str(failing_once)]
    assert body["attention_total"] == 4
    # Each listed with the state and the health their own routes answer (the console's overview needs
    # both, in one request).
    for item in body["attention"]:
        key = item["state"]["integration_id"]
        assert item["state"] == (await client.get(f"/v1/integrations/{key}/sync-state", headers=ADMIN)).json()
        assert item["health"] == (await client.get(f"/v1/integrations/{key}/health", headers=ADMIN)).json()
    health = {a["state"]["integration_id"]: a["health"] for a in body["attention"]}
    assert not health[str(refused)]["healthy"]
    ready = next(c for c in health[str(stuck)]["checks"] if c["name"] == "sync_ready")
    assert (ready["ok"], str(stuck_run) in ready["reason"]) == (False, True)

    limited = (await client.get("/v1/sync-summary", params={"attention_limit": 1}, headers=ADMIN)).json()
    assert [a["state"]["integration_id"] for a in limited["attention"]] == [str(refused)]
    assert limited["attention_total"] == 4
    counted = (await client.get("/v1/sync-summary", params={"attention_limit": 0}, headers=ADMIN)).json()
    assert (counted["attention"], counted["attention_total"]) == ([], 4)
    assert (await client.get("/v1/sync-summary", params={"attention_limit": 501}, headers=ADMIN)).status_code == 400

    manager = await _manager(pool, ["ws-f"])
    denied = await client.get("/v1/sync-summary", headers=manager)
    assert (denied.status_code, denied.json()["error"]) == (403, "admin_only")
    leaked = await client.get("/v1/sync-summary", params={"workspace_id": "ws-f"}, headers=manager)
    assert (leaked.status_code, leaked.json()["error"]) == (403, "admin_only")
