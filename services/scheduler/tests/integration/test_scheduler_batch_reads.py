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
