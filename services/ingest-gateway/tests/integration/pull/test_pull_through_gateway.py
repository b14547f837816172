"""The pull worker as the gateway starts it: its own IntegrationStore (encrypted credentials in
PostgreSQL) and provider client, against the fake Gong over real HTTP."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from callstream.gateway import build_app


async def test_the_gateway_runs_a_pull_with_its_own_store(
    database_url: str, nats_url: str, harness: Any, gong: Any
) -> None:
    from gateway_harness import ADMIN, make_settings

    state, url = gong
    app = build_app(make_settings(database_url, nats_url))
    async with AsyncTestClient(app, timeout=30) as client:
        created = await client.post(
            "/v1/integrations",
            headers=ADMIN,
            json={
                "workspace_id": "ws-pull",
                "provider": "gong",
                "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                "base_url": url,
            },
        )
        assert created.status_code == 201, created.text
        integration = created.json()["id"]
        finished = await harness.finished(await harness.request("gong", integration, "backfill"), timeout=60)
    assert finished.status == "success", finished.error
    assert finished.calls_published == len(state.index.ids)
    assert len(await harness.raw_calls()) == len(state.index.ids)
