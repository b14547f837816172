"""The gateway app on the real embedded PostgreSQL and NATS, with a minimal fake of the provider
endpoints it calls itself (OAuth token endpoint, Fathom webhook management)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.gateway import IntegrationStore, Settings, build_app
from callstream.gateway._signature import sign

ADMIN_TOKEN = "test-admin-" + secrets.token_urlsafe(32)
SECRET_KEY = "k1:" + secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-24b!").decode()
FAKE = "http://fake.provider.test"
# The production allow-list plus the fakes: the mock transport's host and in-process fakes on loopback.
ALLOWED_API_HOSTS = "api.fathom.ai,api.gong.io,*.api.gong.io,http://fake.provider.test,http://127.0.0.1"


def make_settings(database_url: str, nats_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "CALLSTREAM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLSTREAM_SECRET_KEY": SECRET_KEY,
        "CALLSTREAM_GATEWAY_FATHOM_API_URL": f"{FAKE}/fathom/external/v1",
        "CALLSTREAM_GATEWAY_FATHOM_CLIENT_ID": "fathom-client",
        "CALLSTREAM_GATEWAY_FATHOM_CLIENT_SECRET": "fathom-client-secret-value",
        "CALLSTREAM_GATEWAY_FATHOM_AUTHORIZE_URL": f"{FAKE}/fathom/oauth2/authorize",
        "CALLSTREAM_GATEWAY_FATHOM_TOKEN_URL": f"{FAKE}/fathom/oauth2/token",
        "CALLSTREAM_GATEWAY_GONG_CLIENT_ID": "gong-client",
        "CALLSTREAM_GATEWAY_GONG_CLIENT_SECRET": "gong-client-secret-value",
        "CALLSTREAM_GATEWAY_GONG_AUTHORIZE_URL": f"{FAKE}/gong/oauth2/authorize",
        "CALLSTREAM_GATEWAY_GONG_TOKEN_URL": f"{FAKE}/gong/oauth2/generate-customer-token",
        "CALLSTREAM_GATEWAY_PUBLIC_BASE_URL": "https://gateway.example.test",
        "CALLSTREAM_GATEWAY_PUBLISH_TIMEOUT_SECONDS": 1.0,
        "CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS": ALLOWED_API_HOSTS,
    }
    values.update(extra)
    return Settings(**values)


@dataclass
class FakeProvider:
    """Token endpoints with single-use refresh tokens, and Fathom's POST/DELETE /webhooks."""

    token_delay: float = 0.0
    codes: dict[str, str] = field(default_factory=dict)  # code -> provider
    refresh_tokens: set[str] = field(default_factory=set)
    token_requests: list[httpx.Request] = field(default_factory=list)
    webhook_requests: list[httpx.Request] = field(default_factory=list)
    webhooks: dict[str, str] = field(default_factory=dict)  # id -> secret
    delete_status: int | None = None
    expires_in: int = 3600
    gong_api_host: str = "https://us-48213.api.gong.io"  # Gong's api_base_url_for_customer

    def issue_code(self, provider: str) -> str:
        code = "code-" + secrets.token_urlsafe(8)
        self.codes[code] = provider
        return code

    def _tokens(self, provider: str) -> httpx.Response:
        refresh = "rt-" + secrets.token_urlsafe(12)
        self.refresh_tokens.add(refresh)
        body: dict[str, Any] = {
            "access_token": "at-" + secrets.token_urlsafe(12),
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "token_type": "bearer",
        }
        if provider == "gong":
            body["api_base_url_for_customer"] = self.gong_api_host
        return httpx.Response(200, json=body)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith(("/oauth2/token", "/generate-customer-token")):
            self.token_requests.append(request)
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            provider = "gong" if "gong" in path else "fathom"
            if provider == "gong":
                params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
                if (
                    request.headers.get("authorization")
                    != "Basic " + base64.b64encode(b"gong-client:gong-client-secret-value").decode()
                ):
                    return httpx.Response(401, json={"error": "invalid_client"})
            else:
                params = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
                if params.get("client_secret") != "fathom-client-secret-value":
                    return httpx.Response(401, json={"error": "invalid_client"})
            if params.get("grant_type") == "authorization_code":
                if self.codes.pop(params.get("code", ""), None) != provider:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                return self._tokens(provider)
            if params.get("grant_type") == "refresh_token":
                token = params.get("refresh_token", "")
                if token not in self.refresh_tokens:
                    return httpx.Response(400, json={"error": "invalid_grant", "error_description": "revoked"})
                self.refresh_tokens.discard(token)  # single use
                return self._tokens(provider)
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        if path.startswith("/fathom/external/v1/webhooks"):
            self.webhook_requests.append(request)
            if request.method == "POST":
                hook_id = "wh" + secrets.token_hex(6)
                secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
                self.webhooks[hook_id] = secret
                return httpx.Response(201, json={"id": hook_id, "secret": secret, "url": "x", "created_at": "now"})
            if request.method == "DELETE":
                hook_id = path.rsplit("/", 1)[1]
                if self.delete_status is not None:
                    return httpx.Response(self.delete_status)
                return httpx.Response(204 if self.webhooks.pop(hook_id, None) else 404)
        return httpx.Response(404, json={"error": "not_found"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


@dataclass
class Gateway:
    """The app under test. It runs on the test client's event loop: reach it over HTTP, or through
    a store of the test's own (``store()``), never by awaiting the app's objects."""

    client: AsyncTestClient[Litestar]
    app: Litestar
    settings: Settings
    fake: FakeProvider

    async def create_fathom(self, workspace_id: str = "ws-1", **extra: Any) -> dict[str, Any]:
        body = {"workspace_id": workspace_id, "provider": "fathom", "credentials": {"api_key": "fathom-key-123"}}
        body.setdefault("webhook_secret", WEBHOOK_SECRET)
        body.update(extra)
        response = await self.client.post("/v1/integrations", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return dict(response.json())

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[IntegrationStore]:
        pool = await asyncpg.create_pool(self.settings.database_url.get_secret_value(), min_size=0, max_size=3)
        store = IntegrationStore.from_settings(pool, self.settings, http=self.fake.client())
        try:
            yield store
        finally:
            await store.aclose()
            await pool.close()

    async def wait_cached(self, integration_id: str, status: str | None = "active", timeout: float = 5.0) -> None:
        cache = self.app.state.webhook_secrets
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            target = cache.get(integration_id)
            if (target is None and status is None) or (target is not None and target.status == status):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the secret cache did not see {integration_id} as {status}")

    async def deliver(
        self,
        integration_id: str,
        body: bytes,
        *,
        webhook_id: str | None = None,
        secret: str = WEBHOOK_SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/webhooks/fathom/{integration_id}",
            content=body,
            headers=signed_headers(body, webhook_id=webhook_id, secret=secret, timestamp=timestamp) | (headers or {}),
        )


def signed_headers(
    body: bytes, *, webhook_id: str | None = None, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    from callstream.gateway._credentials import webhook_key

    webhook_id = webhook_id or "msg_" + secrets.token_hex(8)
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(ts),
        "Webhook-Signature": sign(webhook_key(secret), webhook_id, ts, body),
    }


@pytest.fixture
def fake_provider() -> FakeProvider:
    return FakeProvider()


async def start_gateway(settings: Settings, fake: FakeProvider) -> AsyncIterator[Gateway]:
    app = build_app(settings, http=fake.client())
    async with AsyncTestClient(app, timeout=30) as client:
        # The app runs on the test client's own event loop (another thread): poll, never await its objects.
        runtime = app.state.runtime
        deadline = time.monotonic() + 15
        while not (runtime.broker.is_connected and app.state.webhook_secrets.ready):
            assert time.monotonic() < deadline, "the gateway did not connect to NATS or load its secret cache"
            await asyncio.sleep(0.02)
        yield Gateway(client, app, settings, fake)


@pytest.fixture
async def gateway(
    database_url: str, nats_url: str, jetstream: object, fake_provider: FakeProvider
) -> AsyncIterator[Gateway]:
    async for gw in start_gateway(make_settings(database_url, nats_url), fake_provider):
        yield gw
