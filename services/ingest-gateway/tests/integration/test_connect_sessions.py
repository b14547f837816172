"""Connect sessions (#18): a URL a product sends its user's browser to; OAuth with a state bound to
that browser by a cookie (PKCE S256 where the app takes it) ends in a redirect to an allow-listed
return_url with the outcome; anything refused stores nothing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from gateway_harness import ADMIN, FakeProvider, Gateway, make_settings, start_gateway

RETURN = "https://app.example.test/integrations/done?tab=calls"
ALLOW = "app.example.test,*.customer.example.test,http://localhost:3000"


@pytest.fixture
async def gateway(
    database_url: str, nats_url: str, jetstream: object, fake_provider: FakeProvider
) -> AsyncIterator[Gateway]:
    settings = make_settings(
        database_url,
        nats_url,
        CALLSTREAM_GATEWAY_RETURN_URL_ALLOW=ALLOW,
        CALLSTREAM_GATEWAY_FATHOM_PKCE=True,  # Gong keeps the default (no PKCE)
    )
    async for gw in start_gateway(settings, fake_provider):
        yield gw


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _manage_token(gateway: Gateway, workspaces: list[str], scopes: list[str] | None = None) -> dict[str, str]:
    response = await gateway.client.post(
        "/v1/tokens",
        json={"workspace_ids": workspaces, "name": "product", "scopes": scopes or ["manage"]},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _session(
    gateway: Gateway, headers: dict[str, str], provider: str = "fathom", workspace_id: str = "ws-c"
) -> str:
    response = await gateway.client.post(
        "/v1/connect-sessions",
        json={"workspace_id": workspace_id, "provider": provider, "return_url": RETURN},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    assert body["url"].startswith("https://gateway.example.test/v1/connect/")
    return str(body["url"]).removeprefix("https://gateway.example.test")


async def _open(gateway: Gateway, path: str) -> tuple[str, str, dict[str, str]]:
    """Open the session's URL as a browser: the cookie set, the state and the authorize query."""
    gateway.client.cookies.clear()
    response = await gateway.client.get(path, follow_redirects=False)
    assert response.status_code == 302, response.text
    set_cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "secure", "samesite"} <= attributes
    assert "samesite=lax" in set_cookie.lower()
    assert "path=/v1/oauth/" in set_cookie.lower()
    nonce = set_cookie.split(";")[0].split("=", 1)[1]
    query = _query(response.headers["location"])
    gateway.client.cookies.clear()
    return nonce, query["state"], query


async def _callback(gateway: Gateway, provider: str, nonce: str | None, **params: str) -> Any:
    gateway.client.cookies.clear()
    headers = {"Cookie": f"callstream_connect={nonce}"} if nonce else {}
    return await gateway.client.get(
        f"/v1/oauth/{provider}/callback", params=params, headers=headers, follow_redirects=False
    )


async def _count(gateway: Gateway, sql: str) -> int:
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_manage_token_connects_fathom_with_pkce_and_a_webhook(gateway: Gateway) -> None:
    manager = await _manage_token(gateway, ["ws-c"])
    nonce, state, authorize = await _open(gateway, await _session(gateway, manager))
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["redirect_uri"] == "https://gateway.example.test/v1/oauth/fathom/callback"

    done = await _callback(gateway, "fathom", nonce, code=gateway.fake.issue_code("fathom"), state=state)
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith("https://app.example.test/integrations/done?")
    outcome = _query(location)
    assert (outcome["tab"], outcome["status"]) == ("calls", "connected")
    assert "max-age=0" in done.headers["set-cookie"].lower()  # the spent cookie is cleared

    [exchange] = gateway.fake.token_requests
    verifier = parse_qs(exchange.content.decode())["code_verifier"][0]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert challenge == authorize["code_challenge"]

    view = (await gateway.client.get(f"/v1/integrations/{outcome['integration_id']}", headers=manager)).json()
    assert (view["workspace_id"], view["auth_kind"], view["status"]) == ("ws-c", "oauth", "active")
    # Its webhook registered through Fathom's API with the OAuth token, the secret kept.
    assert (view["webhook_registered"], view["has_webhook_secret"], view["webhook_note"]) == (True, True, None)
    [register] = [r for r in gateway.fake.webhook_requests if r.method == "POST"]
    assert register.headers["authorization"].startswith("Bearer at-")


async def test_gong_without_pkce_and_the_admin_token(gateway: Gateway) -> None:
    nonce, state, authorize = await _open(gateway, await _session(gateway, ADMIN, "gong"))
    assert "code_challenge" not in authorize
    done = await _callback(gateway, "gong", nonce, code=gateway.fake.issue_code("gong"), state=state)
    assert _query(done.headers["location"])["status"] == "connected"
    [exchange] = gateway.fake.token_requests
    assert "code_verifier" not in exchange.url.query.decode()


async def test_return_url_outside_the_allow_list_is_refused_and_nothing_stored(gateway: Gateway) -> None:
    for url in (
        "https://evil.example.test/done",
        "http://app.example.test/done",  # https only
        "https://app.example.test.evil.test/done",
        "https://app.example.test/done#fragment",
        "https://user:pw@app.example.test/done",
        "javascript:alert(1)",
        "/relative",
    ):
        response = await gateway.client.post(
            "/v1/connect-sessions",
            json={"workspace_id": "ws-c", "provider": "fathom", "return_url": url},
            headers=ADMIN,
        )
        assert (response.status_code, response.json()["error"]) == (400, "return_url_not_allowed"), url
    assert await _count(gateway, "select count(*) from connect_sessions") == 0
    for url in ("http://localhost:3000/cb", "https://a.customer.example.test/cb"):
        response = await gateway.client.post(
            "/v1/connect-sessions",
            json={"workspace_id": "ws-c", "provider": "fathom", "return_url": url},
            headers=ADMIN,
        )
        assert response.status_code == 201, url


async def test_who_may_create_a_session(gateway: Gateway) -> None:
    body = {"workspace_id": "ws-c", "provider": "fathom", "return_url": RETURN}
    reader = await _manage_token(gateway, ["ws-c"], ["read"])
    other = await _manage_token(gateway, ["ws-other"])
    assert (await gateway.client.post("/v1/connect-sessions", json=body)).status_code == 401
    assert (await gateway.client.post("/v1/connect-sessions", json=body, headers=reader)).status_code == 403
    assert (await gateway.client.post("/v1/connect-sessions", json=body, headers=other)).status_code == 404
    assert await _count(gateway, "select count(*) from connect_sessions") == 0


async def test_a_state_used_from_another_browser_is_refused(gateway: Gateway) -> None:
    nonce, state, _ = await _open(gateway, await _session(gateway, ADMIN))
    code = gateway.fake.issue_code("fathom")
    for cookie in ("another-browser", None):  # another browser's cookie, or none at all
        refused = await _callback(gateway, "fathom", cookie, code=code, state=state)
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("https://app.example.test/integrations/done?")
        assert _query(refused.headers["location"])["error"] == "browser_mismatch"
    assert gateway.fake.token_requests == []
    assert await _count(gateway, "select count(*) from integrations") == 0
    # The browser that opened the session still completes it.
    done = await _callback(gateway, "fathom", nonce, code=code, state=state)
    assert _query(done.headers["location"])["status"] == "connected"


async def test_replayed_expired_and_denied_states_end_with_an_error(gateway: Gateway) -> None:
    nonce, state, _ = await _open(gateway, await _session(gateway, ADMIN))
    code = gateway.fake.issue_code("fathom")
    assert (
        _query((await _callback(gateway, "fathom", nonce, code=code, state=state)).headers["location"])["status"]
        == "connected"
    )
    replay = await _callback(gateway, "fathom", nonce, code=code, state=state)
    assert _query(replay.headers["location"])["error"] == "invalid_state"
    assert (await _callback(gateway, "fathom", None, code=code, state=state)).status_code == 400  # no session known

    nonce, state, _ = await _open(gateway, await _session(gateway, ADMIN))
    denied = await _callback(gateway, "fathom", nonce, error="access_denied", state=state)
    assert _query(denied.headers["location"]) | {"tab": ""} == {
        "tab": "",
        "status": "error",
        "error": "authorization_denied",
    }

    nonce, state, _ = await _open(gateway, await _session(gateway, ADMIN))
    bad_code = await _callback(gateway, "fathom", nonce, code="never-issued", state=state)
    assert _query(bad_code.headers["location"])["error"] == "invalid_grant"

    nonce, state, _ = await _open(gateway, await _session(gateway, ADMIN))
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute("update oauth_states set expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    expired = await _callback(gateway, "fathom", nonce, code=gateway.fake.issue_code("fathom"), state=state)
    assert _query(expired.headers["location"])["error"] == "expired_state"
    assert await _count(gateway, "select count(*) from integrations") == 1  # only the first one


async def test_a_session_url_opens_once_and_expires(gateway: Gateway) -> None:
    path = await _session(gateway, ADMIN)
    await _open(gateway, path)
    again = await gateway.client.get(path, follow_redirects=False)
    assert _query(again.headers["location"])["error"] == "session_used"
    assert "set-cookie" not in again.headers

    stale = await _session(gateway, ADMIN)
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "update connect_sessions set expires_at = now() - interval '1 second' where opened_at is null"
        )
    finally:
        await conn.close()
    expired = await gateway.client.get(stale, follow_redirects=False)
    assert _query(expired.headers["location"])["error"] == "session_expired"
    assert (await gateway.client.get("/v1/connect/never-made", follow_redirects=False)).status_code == 404


async def test_without_a_public_base_url_a_fathom_oauth_integration_says_why_it_has_no_webhook(
    database_url: str, nats_url: str, jetstream: object, fake_provider: FakeProvider
) -> None:
    settings = make_settings(
        database_url,
        nats_url,
        CALLSTREAM_GATEWAY_RETURN_URL_ALLOW=ALLOW,
        CALLSTREAM_GATEWAY_PUBLIC_BASE_URL=None,
    )
    async for gateway in start_gateway(settings, fake_provider):
        response = await gateway.client.post(
            "/v1/connect-sessions",
            json={"workspace_id": "ws-c", "provider": "fathom", "return_url": RETURN},
            headers=ADMIN,
        )
        url = urlsplit(response.json()["url"])
        nonce, state, authorize = await _open(gateway, url.path)
        assert authorize["redirect_uri"] == f"{url.scheme}://{url.netloc}/v1/oauth/fathom/callback"
        done = await _callback(gateway, "fathom", nonce, code=gateway.fake.issue_code("fathom"), state=state)
        outcome = _query(done.headers["location"])
        assert outcome["status"] == "connected"
        view = (await gateway.client.get(f"/v1/integrations/{outcome['integration_id']}", headers=ADMIN)).json()
        assert view["webhook_registered"] is False
        assert "CALLSTREAM_GATEWAY_PUBLIC_BASE_URL" in view["webhook_note"]
        assert gateway.fake.webhook_requests == []


async def _connect(gateway: Gateway, headers: dict[str, str], **extra: str) -> dict[str, str]:
    response = await gateway.client.post(
        "/v1/connect-sessions",
        json={"workspace_id": "ws-c", "provider": "fathom", "return_url": RETURN, **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    path = str(response.json()["url"]).removeprefix("https://gateway.example.test")
    nonce, state, _ = await _open(gateway, path)
    done = await _callback(gateway, "fathom", nonce, code=gateway.fake.issue_code("fathom"), state=state)
    assert done.status_code == 303, done.text
    return _query(done.headers["location"])


async def test_a_second_person_connecting_gets_an_integration_of_their_own(gateway: Gateway) -> None:
    """Two people of one workspace each connect their own Fathom account: two integrations, the
    first one's credentials untouched. Naming an integration reconnects that one."""
    manager = await _manage_token(gateway, ["ws-c"])
    first = (await _connect(gateway, manager))["integration_id"]
    sealed = "select credentials from integrations where id = '{}'"
    before = await _count_bytes(gateway, sealed.format(first))
    second = (await _connect(gateway, manager))["integration_id"]
    assert second != first
    assert await _count_bytes(gateway, sealed.format(first)) == before

    again = await _connect(gateway, manager, integration_id=first)
    assert again == {"tab": "calls", "status": "connected", "integration_id": first}
    assert await _count_bytes(gateway, sealed.format(first)) != before
    assert await _count(gateway, "select count(*) from integrations where workspace_id = 'ws-c'") == 2

    # An integration of another workspace, another provider, an API-key one (it would become an
    # OAuth one, its key's webhook left at Fathom) or one disabled cannot be named.
    other = await _manage_token(gateway, ["ws-other"])
    by_key = (await gateway.create_fathom("ws-c"))["id"]
    for headers, body, status in (
        (manager, {"workspace_id": "ws-c", "provider": "fathom", "integration_id": by_key}, 404),
        (other, {"workspace_id": "ws-other", "provider": "fathom", "integration_id": first}, 404),
        (manager, {"workspace_id": "ws-c", "provider": "gong", "integration_id": first}, 404),
        (manager, {"workspace_id": "ws-c", "provider": "fathom", "integration_id": "not-a-uuid"}, 404),
    ):
        refused = await gateway.client.post(
            "/v1/connect-sessions", json={**body, "return_url": RETURN}, headers=headers
        )
        assert refused.status_code == status, refused.text
    disabled = await gateway.client.delete(f"/v1/integrations/{second}", headers=manager)
    assert disabled.status_code == 200, disabled.text
    refused = await gateway.client.post(
        "/v1/connect-sessions",
        json={"workspace_id": "ws-c", "provider": "fathom", "return_url": RETURN, "integration_id": second},
        headers=manager,
    )
    assert (refused.status_code, refused.json()["error"]) == (409, "integration_disabled")


async def test_a_session_of_a_token_revoked_meanwhile_stores_nothing(gateway: Gateway) -> None:
    created = await gateway.client.post(
        "/v1/tokens", json={"workspace_ids": ["ws-c"], "name": "product", "scopes": ["manage"]}, headers=ADMIN
    )
    manager = {"Authorization": f"Bearer {created.json()['token']}"}
    opened_first = await _session(gateway, manager)
    nonce, state, _ = await _open(gateway, await _session(gateway, manager))
    revoked = await gateway.client.delete(f"/v1/tokens/{created.json()['id']}", headers=ADMIN)
    assert revoked.status_code in (200, 204), revoked.text

    done = await _callback(gateway, "fathom", nonce, code=gateway.fake.issue_code("fathom"), state=state)
    assert done.status_code == 303, done.text
    assert _query(done.headers["location"])["status"] == "error"
    assert _query(done.headers["location"])["error"] == "token_revoked"
    opened = await gateway.client.get(opened_first, follow_redirects=False)
    assert opened.status_code == 303, opened.text
    assert _query(opened.headers["location"])["error"] == "token_revoked"
    assert gateway.fake.token_requests == []  # the code was never exchanged
    assert await _count(gateway, "select count(*) from integrations where workspace_id = 'ws-c'") == 0


async def _count_bytes(gateway: Gateway, sql: str) -> bytes:
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        return bytes(await conn.fetchval(sql))
    finally:
        await conn.close()
