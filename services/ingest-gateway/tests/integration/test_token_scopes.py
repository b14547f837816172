"""API token scopes (#18): read tokens stay readers; a manage token manages its own workspaces'
integrations and erasures (another workspace's is a 404, a list shows only its own); tokens and
workspace erasure stay the admin token's."""

from __future__ import annotations

import uuid

import asyncpg
from gateway_harness import ADMIN, Gateway


async def _token(gateway: Gateway, workspaces: list[str], scopes: list[str] | None = None) -> dict[str, str]:
    body: dict[str, object] = {"workspace_ids": workspaces, "name": "product"}
    if scopes is not None:
        body["scopes"] = scopes
    response = await gateway.client.post("/v1/tokens", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}", "scopes": ",".join(response.json()["scopes"])}


def _auth(token: dict[str, str]) -> dict[str, str]:
    return {"Authorization": token["Authorization"]}


async def test_tokens_default_to_read_and_a_manage_token_also_reads(gateway: Gateway) -> None:
    assert (await _token(gateway, ["ws-1"]))["scopes"] == "read"
    assert (await _token(gateway, ["ws-1"], ["manage"]))["scopes"] == "read,manage"
    assert (await _token(gateway, ["ws-1"], ["read", "manage"]))["scopes"] == "read,manage"
    for bad in (["admin"], [], "manage"):
        response = await gateway.client.post(
            "/v1/tokens", json={"workspace_ids": ["ws-1"], "name": "x", "scopes": bad}, headers=ADMIN
        )
        assert response.status_code == 400, bad
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        # A row written as before the column existed (the linker's own tests do) is a read token.
        token_id = uuid.uuid4()
        await conn.execute(
            "insert into api_tokens (id, name, token_hash, workspace_ids) values ($1, 'old', $2, '{ws-1}')",
            token_id,
            "h" + token_id.hex,
        )
        assert await conn.fetchval("select scopes from api_tokens where id = $1", token_id) == ["read"]
    finally:
        await conn.close()


async def test_a_read_token_cannot_manage(gateway: Gateway) -> None:
    reader = _auth(await _token(gateway, ["ws-1"]))
    created = await gateway.create_fathom("ws-1")
    for method, path in (
        ("GET", "/v1/integrations"),
        ("GET", f"/v1/integrations/{created['id']}"),
        ("DELETE", f"/v1/integrations/{created['id']}"),
    ):
        response = await gateway.client.request(method, path, headers=reader)
        assert (response.status_code, response.json()["error"]) == (403, "insufficient_scope"), path
    unknown = await gateway.client.get("/v1/integrations", headers={"Authorization": "Bearer cst_made-up"})
    assert unknown.status_code == 401


async def test_a_manage_token_manages_only_its_workspaces(gateway: Gateway) -> None:
    manager = _auth(await _token(gateway, ["ws-1", "ws-2"], ["manage"]))
    mine = await gateway.create_fathom("ws-1")
    theirs = await gateway.create_fathom("ws-3")

    # Create by API key in its workspace; another workspace is a 404 and nothing is stored.
    created = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-2",
            "provider": "gong",
            "credentials": {"access_key": "AK", "access_key_secret": "S"},
        },
        headers=manager,
    )
    assert created.status_code == 201, created.text
    refused = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-3",
            "provider": "gong",
            "credentials": {"access_key": "AK", "access_key_secret": "S"},
        },
        headers=manager,
    )
    assert (refused.status_code, refused.json()["error"]) == (404, "unknown_workspace")

    listed = await gateway.client.get("/v1/integrations", headers=manager)
    assert sorted(i["id"] for i in listed.json()) == sorted([mine["id"], created.json()["id"]])
    assert (await gateway.client.get("/v1/integrations", params={"workspace_id": "ws-3"}, headers=manager)).json() == []
    assert len((await gateway.client.get("/v1/integrations", headers=ADMIN)).json()) == 3

    assert (await gateway.client.get(f"/v1/integrations/{mine['id']}", headers=manager)).status_code == 200
    foreign = await gateway.client.get(f"/v1/integrations/{theirs['id']}", headers=manager)
    missing = await gateway.client.get(f"/v1/integrations/{uuid.uuid4()}", headers=manager)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()  # nothing tells another workspace's from none

    # Disable and erase: another workspace's is a 404 and stays as it was.
    for path in (f"/v1/integrations/{theirs['id']}", f"/v1/integrations/{theirs['id']}?erase=true"):
        assert (await gateway.client.delete(path, headers=manager)).status_code == 404
    assert (await gateway.client.get(f"/v1/integrations/{theirs['id']}", headers=ADMIN)).json()["status"] == "active"
    disabled = await gateway.client.delete(f"/v1/integrations/{mine['id']}", headers=manager)
    assert (disabled.status_code, disabled.json()["status"]) == (200, "disabled")

    erased = await gateway.client.delete(f"/v1/integrations/{mine['id']}?erase=true", headers=manager)
    assert erased.status_code == 202, erased.text
    job = erased.json()["erasure_id"]
    assert (await gateway.client.get(f"/v1/erasures/{job}", headers=manager)).status_code == 200
    other = await gateway.client.delete(f"/v1/integrations/{theirs['id']}?erase=true", headers=ADMIN)
    assert other.status_code == 202
    assert (await gateway.client.get(f"/v1/erasures/{other.json()['erasure_id']}", headers=manager)).status_code == 404


async def test_tokens_and_workspace_erasure_stay_the_admins(gateway: Gateway) -> None:
    manager = _auth(await _token(gateway, ["ws-1"], ["manage"]))
    made = await gateway.client.post("/v1/tokens", json={"workspace_ids": ["ws-1"], "name": "x"}, headers=manager)
    assert made.status_code == 401
    assert (await gateway.client.delete(f"/v1/tokens/{uuid.uuid4()}", headers=manager)).status_code == 401
    assert (await gateway.client.delete("/v1/workspaces/ws-1", headers=manager)).status_code == 401


async def test_a_revoked_manage_token_stops_at_once(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/tokens", json={"workspace_ids": ["ws-1"], "name": "x", "scopes": ["manage"]}, headers=ADMIN
    )
    manager = {"Authorization": f"Bearer {response.json()['token']}"}
    assert (await gateway.client.get("/v1/integrations", headers=manager)).status_code == 200
    assert (await gateway.client.delete(f"/v1/tokens/{response.json()['id']}", headers=ADMIN)).status_code == 204
    assert (await gateway.client.get("/v1/integrations", headers=manager)).status_code == 401
