"""How many requests the overview and the integrations list make of the services (issue #18's
bench/console: a page of 1,000 integrations over 500 workspaces made 500 sync-state requests and one
health request per syncing or failing row, and waited seconds). The operator's pages ask the
scheduler once for every sync state and once per 200 rows for health; a workspace's sign-in, whose
token may not ask for everything, still asks per workspace and per integration."""

from __future__ import annotations

import collections
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from callstream.console import Settings, build_app
from callstream.console._backend import Backend

TOKEN = "o" * 40
MANAGE = "cst_" + "m" * 40
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
N = 30  # integrations, two per workspace; every third syncing, every fifth failing


def view(k: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{k:012d}", "workspace_id": f"ws-{k // 2}", "provider": "fathom",
        "status": "active", "auth_kind": "api_key", "base_url": None, "webhook_url": None,
        "has_webhook_secret": False, "webhook_registered": False, "last_error": None,
        "created_at": f"2026-12-01T10:{k:02d}:00Z", "updated_at": "2026-12-01T10:00:00Z", "disabled_at": None,
    }  # fmt: skip


VIEWS = [view(k) for k in range(N)]


def state(v: dict[str, Any], k: int) -> dict[str, Any]:
    status = "syncing" if k % 3 == 0 else "error" if k % 5 == 0 else "success"
    return {
        "integration_id": v["id"], "workspace_id": v["workspace_id"], "provider": "fathom", "status": status,
        "integration_status": "active", "watermark": None, "next_due_at": "2026-12-01T12:00:00Z",
        "next_reconcile_at": None, "last_synced_at": "2026-12-01T10:00:00Z", "last_run_id": None,
        "items_synced_total": 3, "items_synced_last_run": 1, "last_error": "boom" if status == "error" else None,
        "consecutive_failures": 1 if status == "error" else 0,
    }  # fmt: skip


STATES = [state(v, k) for k, v in enumerate(VIEWS)]


def health(integration_id: str) -> dict[str, Any]:
    k = int(integration_id[-12:])
    stuck = k == 3
    return {
        "integration_id": integration_id,
        "provider": "fathom",
        "healthy": not stuck,
        "checks": [{"name": "sync_ready", "ok": not stuck, "reason": "run r has not moved for 2 h" if stuck else "ok"}],
    }


def handle(seen: list[httpx.Request]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path, params = request.url.path, request.url.params
        if path == "/v1/integrations":
            return httpx.Response(
                200, json=[v for v in VIEWS if params.get("workspace_id") in (None, v["workspace_id"])]
            )
        if path == "/v1/sync-state":
            wanted, ids = params.get("workspace_id"), params.get_list("integration_id")
            return httpx.Response(
                200,
                json=[
                    s for s in STATES if wanted in (None, s["workspace_id"]) and (not ids or s["integration_id"] in ids)
                ],
            )
        if path == "/v1/sync-summary":
            counts = collections.Counter((s["provider"], s["integration_status"], s["status"]) for s in STATES)
            # As the scheduler lists them: failing, and the one syncing whose run is stuck (k = 3).
            attention = [s for s in STATES if s["status"] == "error" or s["integration_id"] == VIEWS[3]["id"]]
            return httpx.Response(
                200,
                json={
                    "counts": [
                        {"provider": p, "integration_status": i, "status": st, "count": n}
                        for (p, i, st), n in counts.items()
                    ],
                    "attention": [{"state": s, "health": health(s["integration_id"])} for s in attention],
                    "attention_total": len(attention),
                },
            )
        if path == "/v1/health":
            return httpx.Response(200, json={"items": [health(i) for i in params.get_list("integration_id")]})
        if path.endswith("/health") and path.startswith("/v1/integrations/"):
            return httpx.Response(200, json=health(path.split("/")[3]))
        if path == "/health/ready":
            return httpx.Response(200, json={"status": "ready", "checks": {"database": "ok"}})
        if path == "/metrics":
            return httpx.Response(200, text="")
        return httpx.Response(404, json={"error": "not_found", "detail": "nothing here"})

    return answer


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
async def client(seen: list[httpx.Request]) -> AsyncIterator[AsyncTestClient[Any]]:
    config = Settings(
        CALLSTREAM_CONSOLE_ADMIN_TOKEN=TOKEN,  # type: ignore[call-arg]
        CALLSTREAM_CONSOLE_GATEWAY_TOKEN=SecretStr("cs_gateway_admin_" + "g" * 40),
    )
    app = build_app(config, backend=Backend(config, transport=httpx.MockTransport(handle(seen))))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def sign_in(client: AsyncTestClient[Any], token: str) -> None:
    page = await client.get("/login")
    found = CSRF.search(page.text)
    assert found
    answer = await client.post(
        "/login", data={"token": token, "_csrf_token": found.group(1), "next": "/"}, follow_redirects=False
    )
    assert answer.status_code == 303


def scheduler_calls(seen: list[httpx.Request]) -> list[str]:
    """The scheduler's API calls (its readiness aside)."""
    return sorted(r.url.path for r in seen if r.url.port == 8083 and r.url.path.startswith("/v1/"))


async def test_the_operators_pages_ask_the_scheduler_once_whatever_the_number_of_workspaces(
    client: AsyncTestClient[Any], seen: list[httpx.Request]
) -> None:
    await sign_in(client, TOKEN)
    seen.clear()
    overview = await client.get("/")
    assert overview.status_code == 200
    # The summary alone (counts, and the rows that may need a person with their health): not the
    # gateway's list, nor every state, nor a health request after it.
    assert scheduler_calls(seen) == ["/v1/sync-summary"]
    assert not [r for r in seen if r.url.path == "/v1/integrations"]
    failing = [s["integration_id"] for s in STATES if s["status"] == "error"]
    # What the answers say is on the page: the stuck run, the failing rows, the counts of every word.
    assert "run r has not moved for 2 h" in overview.text
    assert overview.text.count('<span class="badge bad">failing</span>') == 2  # the alert, and its count
    assert f'">{len(failing)} integrations</a> whose last runs failed' in overview.text
    assert all(i in overview.text for i in [*failing, VIEWS[3]["id"]])
    assert VIEWS[6]["id"] not in overview.text  # syncing, not stuck: no one's concern
    healthy = sum(1 for s in STATES if s["status"] == "success")
    assert f'<span class="badge ok">healthy</span> {healthy}</a>' in overview.text
    assert f"all {N} →" in overview.text

    seen.clear()
    listed = await client.get("/integrations")
    assert listed.status_code == 200
    # As the overview: one batch of health for the syncing and failing rows (their status word).
    assert scheduler_calls(seen) == ["/v1/health", "/v1/sync-state"]
    assert all(v["id"] in listed.text for v in VIEWS)
    assert [dict(r.url.params) for r in seen if r.url.path == "/v1/integrations"] == [{"limit": "50"}]
    # One workspace named: a page of that workspace's, the states of its rows alone.
    seen.clear()
    one = await client.get("/integrations?workspace_id=ws-1")
    assert [dict(r.url.params) for r in seen if r.url.path == "/v1/integrations"] == [
        {"limit": "50", "workspace_id": "ws-1"}
    ]
    assert [r.url.params.get_list("integration_id") for r in seen if r.url.path == "/v1/sync-state"] == [
        [VIEWS[2]["id"], VIEWS[3]["id"]]
    ]
    assert VIEWS[2]["id"] in one.text
    assert VIEWS[4]["id"] not in one.text


async def test_a_workspace_sign_in_asks_per_workspace_and_per_integration(
    client: AsyncTestClient[Any], seen: list[httpx.Request]
) -> None:
    await sign_in(client, MANAGE)
    seen.clear()
    overview = await client.get("/")
    assert overview.status_code == 200
    calls = scheduler_calls(seen)
    assert "/v1/health" not in calls
    assert calls.count("/v1/sync-state") == N // 2
    assert all(r.url.params.get("workspace_id") for r in seen if r.url.path == "/v1/sync-state")
    asked = sum(1 for s in STATES if s["status"] in ("syncing", "error"))
    assert sum(1 for c in calls if c.endswith("/health")) == asked
    assert "run r has not moved for 2 h" in overview.text
