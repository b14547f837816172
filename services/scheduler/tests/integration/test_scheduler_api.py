"""Admin HTTP: bearer auth, manual runs (409 while one is active), history pages and sync state.
The app runs with its real workers (due loop and event consumer) against a simulated clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from scheduler_kit import ADMIN_TOKEN, FakeClock, StandInWorker, add_integration

from callstream.contracts import SYNC, SyncRequested

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


async def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix of it
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
async def test_every_admin_route_needs_the_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    some = uuid.uuid4()
    for method, path in [
        ("POST", f"/v1/integrations/{some}/syncs"),
        ("GET", f"/v1/integrations/{some}/syncs"),
        ("GET", f"/v1/integrations/{some}/sync-state"),
        ("GET", "/v1/sync-state?workspace_id=ws-1"),
    ]:
        response = await client.request(method, path, headers=headers, json={"mode": "incremental"})
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_manual_run_409_while_active_then_202_after_it_finished(
    client: httpx.AsyncClient, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong", parked_until=clock.now() + DAY)
    first = await client.post(
        f"/v1/integrations/{integration_id}/syncs", json={"mode": "latest", "limit": 5}, headers=AUTH
    )
    assert first.status_code == 202, first.text
    run_id = first.json()["run_id"]
    msg = await js.get_last_msg(SYNC, "sync.requested.gong")
    assert msg.data is not None
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    assert (request.run_id, request.mode, request.limit) == (run_id, "latest", 5)
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == run_id

    busy = await client.post(f"/v1/integrations/{integration_id}/syncs", json={"mode": "incremental"}, headers=AUTH)
    assert busy.status_code == 409
    assert busy.json()["error"] == "run_active"

    # The (stand-in) worker finishes it; the app's own consumer settles the run.
    worker = StandInWorker(js, clock)
    assert [r.run_id for r in await worker.work()] == [run_id]

    async def settled() -> bool:
        state = (await client.get(f"/v1/integrations/{integration_id}/sync-state", headers=AUTH)).json()
        return bool(state["status"] == "success")

    await _eventually(settled)
    again = await client.post(f"/v1/integrations/{integration_id}/syncs", json={"mode": "incremental"}, headers=AUTH)
    assert again.status_code == 202
    assert again.json()["run_id"] != run_id


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "bad_request"),
        (b'{"mode": "sometimes"}', 400, "bad_request"),
        (b'{"mode": "range"}', 400, "bad_request"),
        (b'{"mode": "range", "from": "2026-03-01T00:00:00"}', 400, "bad_request"),  # no time zone
        (b'{"mode": "range", "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}', 400, "bad_request"),
        (b'{"mode": "latest", "limit": 0}', 400, "bad_request"),
        (b'{"mode": "incremental", "extra": 1}', 400, "bad_request"),
    ],
)
async def test_bad_requests_are_refused_and_create_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock, body: bytes, status: int, error: str
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    response = await client.post(
        f"/v1/integrations/{integration_id}/syncs", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert await pool.fetchval("select count(*) from sync_runs") == 0


async def test_unknown_and_inactive_integrations(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    missing = await client.post(f"/v1/integrations/{uuid.uuid4()}/syncs", json={"mode": "incremental"}, headers=AUTH)
    assert (missing.status_code, missing.json()["error"]) == (404, "integration_not_found")
    for path in (f"/v1/integrations/{uuid.uuid4()}/syncs", f"/v1/integrations/{uuid.uuid4()}/sync-state"):
        response = await client.get(path, headers=AUTH)
        assert (response.status_code, response.json()["error"]) == (404, "integration_not_found")
    disabled = await add_integration(pool, "fathom", status="disabled")
    refused = await client.post(f"/v1/integrations/{disabled}/syncs", json={"mode": "incremental"}, headers=AUTH)
    assert (refused.status_code, refused.json()["error"]) == (409, "integration_not_active")


async def test_run_history_is_paginated_newest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    made = []
    for hour in range(5):
        run_id = uuid.uuid4()
        await pool.execute(
            """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at,
                                      calls_published)
               values ($1, $2, 'ws-1', 'fathom', 'incremental', 'schedule', 'success', $3, $4)""",
            run_id,
            integration_id,
            clock.now() - timedelta(hours=hour),
            hour,
        )
        made.append(str(run_id))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/integrations/{integration_id}/syncs", params=params, headers=AUTH)).json()
        seen += [item["run_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made  # newest first, each once
    assert pages == 3
    bad = await client.get(f"/v1/integrations/{integration_id}/syncs", params={"cursor": "bm9wZQ"}, headers=AUTH)
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_cursor")
    too_many = await client.get(f"/v1/integrations/{integration_id}/syncs", params={"limit": 1000}, headers=AUTH)
    assert too_many.status_code == 400


async def test_sync_state_of_a_workspace(client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock) -> None:
    seen = await add_integration(pool, "gong", workspace_id="ws-a", parked_until=clock.now() + DAY)
    await pool.execute(
        "update sync_state set items_synced_total = 42, status = 'success' where integration_id = $1", seen
    )
    reauth = await add_integration(pool, "fathom", workspace_id="ws-a", status="reauth_required")
    await add_integration(pool, "fathom", workspace_id="ws-b")
    states = (await client.get("/v1/sync-state", params={"workspace_id": "ws-a"}, headers=AUTH)).json()
    by_id = {s["integration_id"]: s for s in states}
    assert set(by_id) == {str(seen), str(reauth)}
    assert (by_id[str(seen)]["status"], by_id[str(seen)]["items_synced_total"]) == ("success", 42)
    assert by_id[str(reauth)]["status"] == "reauth_required"
    bad = await client.get("/v1/sync-state", params={"workspace_id": "not a workspace"}, headers=AUTH)
    assert bad.status_code == 400
