"""OAuth refreshes are counted by outcome, for the dashboards and CallstreamTokenRefreshFailing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from gateway_harness import Gateway
from prometheus_client import REGISTRY

from callstream.gateway import ReauthRequired
from callstream.gateway._credentials import Credentials, seal_credentials


def refreshes(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "callstream_gateway_token_refreshes_total", {"provider": "fathom", "outcome": outcome}
        )
        or 0.0
    )


async def _oauth_row(gateway: Gateway) -> str:
    integration_id = str(uuid.uuid4())
    refresh = "rt-seeded-" + integration_id[:8]
    gateway.fake.refresh_tokens.add(refresh)
    creds = Credentials(access_token="at-old", refresh_token=refresh, expires_at=datetime.now(UTC) + timedelta(hours=1))
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "insert into integrations (id, workspace_id, provider, auth_kind, credentials) values ($1, 'ws-m', 'fathom', 'oauth', $2)",
            uuid.UUID(integration_id),
            seal_credentials(gateway.settings.cipher(), integration_id, creds),
        )
    finally:
        await conn.close()
    return integration_id


async def test_refreshes_are_counted_by_outcome(gateway: Gateway) -> None:
    before = {o: refreshes(o) for o in ("refreshed", "refused", "failed")}
    integration_id = await _oauth_row(gateway)
    async with gateway.store() as store:
        await store.refreshed(integration_id, "at-old")
        gateway.fake.refresh_tokens.clear()  # the user revoked the app
        fresh = await store.refreshed(integration_id, None)  # not expiring: no request, nothing counted
        with pytest.raises(ReauthRequired):
            await store.refreshed(integration_id, fresh.access_token)
    assert refreshes("refreshed") - before["refreshed"] == 1
    assert refreshes("refused") - before["refused"] == 1
    assert refreshes("failed") == before["failed"]
    served = (await gateway.client.get("/metrics")).text
    assert 'callstream_gateway_token_refreshes_total{outcome="refused",provider="fathom"}' in served
