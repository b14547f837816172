"""OAuth connect and refresh against a minimal fake token endpoint (single-use refresh tokens)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from gateway_harness import ADMIN, FakeProvider, Gateway

from callstream.gateway import IntegrationStore, ReauthRequired
from callstream.gateway._credentials import Credentials, seal_credentials


async def _authorize(gateway: Gateway, provider: str, workspace_id: str = "ws-o", **params: str) -> str:
    response = await gateway.client.get(
        f"/v1/oauth/{provider}/authorize",
        params={"workspace_id": workspace_id, **params},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path.endswith(f"/{provider}/oauth2/authorize")
    assert query["redirect_uri"] == f"https://gateway.example.test/v1/oauth/{provider}/callback"
    assert query["client_id"] == f"{provider}-client"
    assert query["response_type"] == "code"
    return query["state"]


async def _connect(gateway: Gateway, provider: str, workspace_id: str = "ws-o") -> dict[str, Any]:
    state = await _authorize(gateway, provider, workspace_id)
    code = gateway.fake.issue_code(provider)
    response = await gateway.client.get(f"/v1/oauth/{provider}/callback", params={"code": code, "state": state})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_fathom_connect_creates_an_oauth_integration(gateway: Gateway) -> None:
    integration = await _connect(gateway, "fathom")
    assert (integration["provider"], integration["auth_kind"], integration["status"]) == ("fathom", "oauth", "active")
    [exchange] = gateway.fake.token_requests
    form = {k: v[0] for k, v in parse_qs(exchange.content.decode()).items()}
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == "https://gateway.example.test/v1/oauth/fathom/callback"
    assert exchange.headers["content-type"] == "application/x-www-form-urlencoded"
    async with gateway.store() as store:
        access = await store.access(integration["id"])
    assert access is not None
    assert access.access_token
    assert access.access_token.startswith("at-")
    assert access.expires_at is not None
    assert access.expires_at > datetime.now(UTC) + timedelta(minutes=50)
    # Connecting the same workspace again updates that integration rather than adding one.
    again = await _connect(gateway, "fathom")
    assert again["id"] == integration["id"]


async def test_gong_connect_uses_basic_auth_and_keeps_the_tenant_host(gateway: Gateway) -> None:
    integration = await _connect(gateway, "gong")
    [exchange] = gateway.fake.token_requests
    assert (
        exchange.headers["authorization"]
        == "Basic " + base64.b64encode(b"gong-client:gong-client-secret-value").decode()
    )
    assert parse_qs(exchange.url.query.decode())["grant_type"] == ["authorization_code"]
    assert integration["base_url"] == "https://us-48213.api.gong.io"


async def test_gong_tenant_host_outside_the_allow_list_is_not_stored(gateway: Gateway) -> None:
    gateway.fake.gong_api_host = "http://169.254.169.254"
    state = await _authorize(gateway, "gong")
    response = await gateway.client.get(
        "/v1/oauth/gong/callback", params={"code": gateway.fake.issue_code("gong"), "state": state}
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "base_url_not_allowed"
    assert "169.254.169.254" in response.json()["detail"]
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


async def test_state_is_one_time_and_expires(gateway: Gateway) -> None:
    state = await _authorize(gateway, "fathom")
    code = gateway.fake.issue_code("fathom")
    ok = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": code, "state": state})
    assert ok.status_code == 200
    reused = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": code, "state": state})
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_state")
    unknown = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": "c", "state": "never-issued"})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_state")
    other_provider = await _authorize(gateway, "gong")
    crossed = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": "c", "state": other_provider})
    assert crossed.status_code == 400

    stale = await _authorize(gateway, "fathom")
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute("update oauth_states set expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    expired = await gateway.client.get(
        "/v1/oauth/fathom/callback", params={"code": gateway.fake.issue_code("fathom"), "state": stale}
    )
    assert (expired.status_code, expired.json()["error"]) == (400, "expired_state")
    assert len(gateway.fake.token_requests) == 1  # only the first, valid callback reached the provider


async def test_authorize_needs_admin_and_a_valid_workspace(gateway: Gateway) -> None:
    assert (await gateway.client.get("/v1/oauth/fathom/authorize", params={"workspace_id": "w"})).status_code == 401
    bad = await gateway.client.get("/v1/oauth/fathom/authorize", params={"workspace_id": "no spaces"}, headers=ADMIN)
    assert bad.status_code == 400
    unknown = await gateway.client.get("/v1/oauth/zoom/authorize", params={"workspace_id": "w"}, headers=ADMIN)
    assert unknown.status_code == 404


async def test_refused_code_is_a_400(gateway: Gateway) -> None:
    state = await _authorize(gateway, "fathom")
    response = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": "forged", "state": state})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


async def _oauth_row(gateway: Gateway, provider: str = "fathom", expires_in: timedelta = timedelta(hours=1)) -> str:
    """An OAuth integration whose refresh token the fake knows."""
    integration_id = str(uuid.uuid4())
    refresh = "rt-seeded-" + integration_id[:8]
    gateway.fake.refresh_tokens.add(refresh)
    creds = Credentials(access_token="at-old", refresh_token=refresh, expires_at=datetime.now(UTC) + expires_in)
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "insert into integrations (id, workspace_id, provider, auth_kind, credentials) values ($1, 'ws-r', $2, 'oauth', $3)",
            uuid.UUID(integration_id),
            provider,
            seal_credentials(gateway.settings.cipher(), integration_id, creds),
        )
    finally:
        await conn.close()
    return integration_id


@pytest.fixture
async def replicas(gateway: Gateway) -> Any:
    """Two stores with pools of their own: two gateway replicas sharing the database."""
    dsn = gateway.settings.database_url.get_secret_value()
    pools = [await asyncpg.create_pool(dsn, min_size=1, max_size=3) for _ in range(2)]
    stores = [IntegrationStore.from_settings(pool, gateway.settings, http=gateway.fake.client()) for pool in pools]
    yield stores
    for store in stores:
        await store.aclose()
    for pool in pools:
        await pool.close()


async def test_refresh_race_makes_one_token_request(gateway: Gateway, replicas: list[IntegrationStore]) -> None:
    fake: FakeProvider = gateway.fake
    fake.token_delay = 0.3  # both callers arrive while the first refresh is in flight
    integration_id = await _oauth_row(gateway, "gong")
    first, second = await asyncio.gather(
        replicas[0].refreshed(integration_id, "at-old"), replicas[1].refreshed(integration_id, "at-old")
    )
    assert len(fake.token_requests) == 1
    assert first.access_token == second.access_token != "at-old"
    assert first.base_url == "https://us-48213.api.gong.io"
    # The rotated refresh token was stored: the next refresh (after another 401) works.
    third = await replicas[1].refreshed(integration_id, first.access_token)
    assert len(fake.token_requests) == 2
    assert third.access_token not in ("at-old", first.access_token)


async def test_refresh_keeps_the_tokens_but_not_a_host_outside_the_allow_list(
    gateway: Gateway, replicas: list[IntegrationStore]
) -> None:
    integration_id = await _oauth_row(gateway, "gong")
    gateway.fake.gong_api_host = "https://us-1.api.gong.io"
    first = await replicas[0].refreshed(integration_id, "at-old")
    assert first.base_url == "https://us-1.api.gong.io"
    gateway.fake.gong_api_host = "https://metadata.internal.example"
    second = await replicas[0].refreshed(integration_id, first.access_token)
    assert second.access_token not in ("at-old", first.access_token)  # the rotated tokens are kept
    assert second.base_url == "https://us-1.api.gong.io"  # the host is not
    read = await gateway.client.get(f"/v1/integrations/{integration_id}", headers=ADMIN)
    assert read.json()["status"] == "active"
    assert "metadata.internal.example" in read.json()["last_error"]


async def test_refresh_ahead_of_expiry(gateway: Gateway, replicas: list[IntegrationStore]) -> None:
    fresh = await _oauth_row(gateway, expires_in=timedelta(hours=1))
    assert (await replicas[0].access(fresh)).access_token == "at-old"  # type: ignore[union-attr]
    assert gateway.fake.token_requests == []
    expiring = await _oauth_row(gateway, expires_in=timedelta(minutes=2))
    results = await asyncio.gather(replicas[0].access(expiring), replicas[1].access(expiring))
    assert len(gateway.fake.token_requests) == 1
    assert {r.access_token for r in results if r} != {"at-old"}
    assert await replicas[0].access(str(uuid.uuid4())) is None


async def test_invalid_grant_sets_reauth_required_without_retrying(
    gateway: Gateway, replicas: list[IntegrationStore]
) -> None:
    integration_id = await _oauth_row(gateway)
    gateway.fake.refresh_tokens.clear()  # revoked by the user
    with pytest.raises(ReauthRequired):
        await replicas[0].refreshed(integration_id, "at-old")
    read = await gateway.client.get(f"/v1/integrations/{integration_id}", headers=ADMIN)
    assert read.json()["status"] == "reauth_required"
    assert "invalid_grant" in read.json()["last_error"]
    with pytest.raises(ReauthRequired):
        await replicas[1].refreshed(integration_id, "at-old")
    assert len(gateway.fake.token_requests) == 1  # no retry loop
    # Connecting again through OAuth makes it active again.
    state = await _authorize(gateway, "fathom", "ws-r", integration_id=integration_id)
    code = gateway.fake.issue_code("fathom")
    again = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": code, "state": state})
    assert again.status_code == 200
    assert again.json()["id"] == integration_id
    assert again.json()["status"] == "active"


async def test_a_callback_for_a_disabled_integration_is_refused_and_leaves_it_disabled(gateway: Gateway) -> None:
    integration_id = await _oauth_row(gateway)
    state = await _authorize(gateway, "fathom", "ws-r", integration_id=integration_id)
    # Disabled while its user was at the provider: connecting must not quietly re-enable it.
    assert (await gateway.client.delete(f"/v1/integrations/{integration_id}", headers=ADMIN)).status_code == 200
    code = gateway.fake.issue_code("fathom")
    refused = await gateway.client.get("/v1/oauth/fathom/callback", params={"code": code, "state": state})
    assert (refused.status_code, refused.json()["error"]) == (409, "integration_disabled")
    read = await gateway.client.get(f"/v1/integrations/{integration_id}", headers=ADMIN)
    assert read.json()["status"] == "disabled"
    assert gateway.fake.token_requests == []  # the code was not even exchanged
    # Nor does a new authorize name it.
    again = await gateway.client.get(
        "/v1/oauth/fathom/authorize",
        params={"workspace_id": "ws-r", "integration_id": integration_id},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert (again.status_code, again.json()["error"]) == (409, "integration_disabled")
