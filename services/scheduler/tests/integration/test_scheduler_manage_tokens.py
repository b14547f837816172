"""A workspace's manage token (#18) at the scheduler: sync requests, cancel, run history, progress
events, sync state and health of its own workspaces' integrations; another workspace's integration
is a 404 exactly like one that does not exist; a read token may not manage."""

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


async def _token(pool: asyncpg.Pool, workspaces: list[str], scopes: list[str]) -> dict[str, str]:
    """Stands in for the gateway issuing a token (POST /v1/tokens): only its hash is stored."""
    token = "cst_" + secrets.token_urlsafe(32)
    await pool.execute(
        "insert into api_tokens (id, name, token_hash, workspace_ids, scopes) values ($1, 't', $2, $3, $4)",
        uuid.uuid4(),
        hash_api_token(token),
        workspaces,
        scopes,
    )
    return {"Authorization": f"Bearer {token}"}


async def test_a_manage_token_runs_its_workspaces_syncs_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    manager = await _token(pool, ["ws-m"], ["read", "manage"])
    parked = clock.now() + timedelta(days=1)
    mine = await add_integration(pool, "fathom", workspace_id="ws-m", parked_until=parked)
    theirs = await add_integration(pool, "fathom", workspace_id="ws-x", parked_until=parked)

    accepted = await client.post(f"/v1/integrations/{mine}/syncs", json={"mode": "latest", "limit": 5}, headers=manager)
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    assert (await client.get(f"/v1/integrations/{mine}/syncs", headers=manager)).status_code == 200
    assert (await client.get(f"/v1/integrations/{mine}/sync-state", headers=manager)).status_code == 200
    assert (await client.get(f"/v1/integrations/{mine}/health", headers=manager)).status_code == 200
    listed = await client.get("/v1/sync-state", params={"workspace_id": "ws-m"}, headers=manager)
    assert [s["integration_id"] for s in listed.json()] == [str(mine)]
    cancelled = await client.post(f"/v1/integrations/{mine}/syncs/{run_id}/cancel", headers=manager)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")

    # Another workspace's integration: the same 404 as an integration that does not exist.
    unknown = uuid.uuid4()
    for integration_id in (theirs, unknown):
        for method, path in (
            ("POST", f"/v1/integrations/{integration_id}/syncs"),
            ("POST", f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel"),
            ("GET", f"/v1/integrations/{integration_id}/syncs"),
            ("GET", f"/v1/integrations/{integration_id}/sync-state"),
            ("GET", f"/v1/integrations/{integration_id}/health"),
            ("GET", f"/v1/integrations/{integration_id}/syncs/{run_id}/events"),
        ):
            response = await client.request(method, path, json={"mode": "latest", "limit": 5}, headers=manager)
            assert (response.status_code, response.json()["error"]) == (404, "integration_not_found"), path
    other = await client.get("/v1/sync-state", params={"workspace_id": "ws-x"}, headers=manager)
    assert other.status_code == 404
    # its own workspace named first and the other's after it: refused, not the other's rows (review)
    both = await client.get("/v1/sync-state?workspace_id=ws-m&workspace_id=ws-x", headers=manager)
    assert (both.status_code, both.json()["error"]) == (400, "bad_workspace_id")
    # Nothing was asked of the other workspace's integration.
    assert await pool.fetchval("select count(*) from sync_runs where integration_id = $1", theirs) == 0
    # The admin token keeps every power.
    admin = await client.post(f"/v1/integrations/{theirs}/syncs", json={"mode": "latest", "limit": 5}, headers=ADMIN)
    assert admin.status_code == 202


async def test_read_unknown_and_revoked_tokens_may_not_manage(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", workspace_id="ws-m", parked_until=clock.now())
    reader = await _token(pool, ["ws-m"], ["read"])
    path = f"/v1/integrations/{integration_id}/syncs"
    refused = await client.post(path, json={"mode": "latest", "limit": 5}, headers=reader)
    assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")
    for headers in ({}, {"Authorization": "Bearer cst_made-up"}):
        assert (await client.post(path, json={"mode": "latest"}, headers=headers)).status_code == 401
    manager = await _token(pool, ["ws-m"], ["read", "manage"])
    await pool.execute(
        "update api_tokens set revoked_at = now() where token_hash = $1",
        hash_api_token(manager["Authorization"].removeprefix("Bearer ")),
    )
    assert (await client.get(path, headers=manager)).status_code == 401
