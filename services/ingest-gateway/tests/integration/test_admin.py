"""Admin API: integrations and API tokens, on the real database."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from gateway_harness import ADMIN, WEBHOOK_SECRET, Gateway

from callstream.contracts import hash_api_token
from callstream.gateway._integrations import HostNotAllowed


async def test_admin_token_is_required(gateway: Gateway) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": ADMIN["Authorization"].replace("Bearer", "Basic")},
    ):
        response = await gateway.client.get("/v1/integrations", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).status_code == 200


async def test_create_read_list_disable(gateway: Gateway) -> None:
    created = await gateway.create_fathom("ws-a")
    assert set(created) == {"id", "workspace_id", "provider", "status", "webhook_url"}
    assert created["status"] == "active"
    assert created["webhook_url"] == f"https://gateway.example.test/v1/webhooks/fathom/{created['id']}"
    gong = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-a",
            "provider": "gong",
            "credentials": {"access_key": "AK", "access_key_secret": "gong-secret-value"},
            "base_url": "https://us-48213.api.gong.io",
        },
        headers=ADMIN,
    )
    assert gong.status_code == 201, gong.text
    assert gong.json()["webhook_url"] is None
    await gateway.create_fathom("ws-b")

    read = await gateway.client.get(f"/v1/integrations/{created['id']}", headers=ADMIN)
    assert read.status_code == 200
    assert read.json()["has_webhook_secret"] is True
    assert read.json()["auth_kind"] == "api_key"
    listed = await gateway.client.get("/v1/integrations", params={"workspace_id": "ws-a"}, headers=ADMIN)
    assert sorted(i["provider"] for i in listed.json()) == ["fathom", "gong"]
    everything = json.dumps(listed.json()) + read.text
    for secret in ("fathom-key-123", "gong-secret-value", WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in everything

    disabled = await gateway.client.delete(f"/v1/integrations/{created['id']}", headers=ADMIN)
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert disabled.json()["disabled_at"]
    assert (await gateway.client.get(f"/v1/integrations/{uuid.uuid4()}", headers=ADMIN)).status_code == 404
    assert (await gateway.client.delete("/v1/integrations/nope", headers=ADMIN)).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"workspace_id": "bad space", "provider": "fathom", "credentials": {"api_key": "k"}}, "invalid_request"),
        ({"workspace_id": "w" * 65, "provider": "fathom", "credentials": {"api_key": "k"}}, "invalid_request"),
        ({"workspace_id": "ws", "provider": "zoom", "credentials": {"api_key": "k"}}, "invalid_request"),
        ({"workspace_id": "ws", "provider": "fathom", "credentials": {"access_key": "k"}}, "invalid_credentials"),
        ({"workspace_id": "ws", "provider": "gong", "credentials": {"access_key": "k"}}, "invalid_credentials"),
        ({"workspace_id": "ws", "provider": "fathom", "credentials": {"api_key": " "}}, "invalid_credentials"),
        (
            {"workspace_id": "ws", "provider": "fathom", "credentials": {"api_key": "k"}, "webhook_secret": "whsec_!!"},
            "invalid_webhook_secret",
        ),
        (
            {"workspace_id": "ws", "provider": "fathom", "credentials": {"api_key": "k"}, "base_url": "ftp://x"},
            "base_url_not_allowed",
        ),
        ({"workspace_id": "ws", "provider": "fathom", "credentials": {"api_key": "k"}, "extra": 1}, "invalid_request"),
    ],
)
async def test_bad_input_is_a_clear_400(gateway: Gateway, body: dict[str, object], code: str) -> None:
    response = await gateway.client.post("/v1/integrations", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://10.0.0.7",
        "http://localhost:5432",
        "https://api.gong.io.evil.example",
        "http://api.gong.io",  # the right host, but not over https
        "https://api.gong.io@127.0.0.2/",
        "http://2130706434:8080",  # 127.0.0.2 in the form getaddrinfo also reads
    ],
)
async def test_base_url_outside_the_allow_list_is_refused_and_nothing_is_called(
    gateway: Gateway, base_url: str
) -> None:
    for provider, credentials in (
        ("fathom", {"api_key": "fathom-key-123"}),
        ("gong", {"access_key": "AK", "access_key_secret": "gong-secret-value"}),
    ):
        body = {"workspace_id": "ws-ssrf", "provider": provider, "credentials": credentials, "base_url": base_url}
        if provider == "fathom":
            body["register_webhook"] = True  # would call base_url at once with the API key
        response = await gateway.client.post("/v1/integrations", json=body, headers=ADMIN)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "base_url_not_allowed"
        assert set(response.json()) == {"error", "detail"}
    assert gateway.fake.webhook_requests == []
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


async def test_allowed_hosts_are_stored_and_used(gateway: Gateway) -> None:
    gong = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-hosts",
            "provider": "gong",
            "credentials": {"access_key": "AK", "access_key_secret": "gong-secret-value"},
            "base_url": "https://us-55616.api.gong.io/",
        },
        headers=ADMIN,
    )
    assert gong.status_code == 201, gong.text
    read = await gateway.client.get(f"/v1/integrations/{gong.json()['id']}", headers=ADMIN)
    assert read.json()["base_url"] == "https://us-55616.api.gong.io"
    # The harness lists http://fake.provider.test: the webhook is registered there, over http.
    await gateway.create_fathom(
        "ws-hosts", webhook_secret=None, register_webhook=True, base_url="http://fake.provider.test/fathom/external/v1"
    )
    [register] = gateway.fake.webhook_requests
    assert str(register.url) == "http://fake.provider.test/fathom/external/v1/webhooks"


@pytest.mark.parametrize(
    "public_base_url",
    ["http://hooks.example.test", "https://10.1.2.3", "https://localhost", "https://u:p@hooks.example.test"],
)
async def test_webhook_destination_must_be_public_https(gateway: Gateway, public_base_url: str) -> None:
    response = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-dest",
            "provider": "fathom",
            "credentials": {"api_key": "fathom-key-123"},
            "register_webhook": True,
            "public_base_url": public_base_url,
        },
        headers=ADMIN,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "public_base_url_not_allowed"
    assert gateway.fake.webhook_requests == []
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


async def test_disable_does_not_call_a_stored_host_the_list_no_longer_allows(gateway: Gateway) -> None:
    created = await gateway.create_fathom(webhook_secret=None, register_webhook=True)
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:  # a row from before the allow-list
        await conn.execute(
            "update integrations set base_url = 'http://169.254.169.254' where id = $1", uuid.UUID(created["id"])
        )
    finally:
        await conn.close()
    gateway.fake.webhook_requests.clear()
    disabled = await gateway.client.delete(f"/v1/integrations/{created['id']}", headers=ADMIN)
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert gateway.fake.webhook_requests == []
    assert "169.254.169.254" in disabled.json()["last_error"]
    assert disabled.json()["webhook_registered"] is True  # kept on record to delete by hand


async def test_a_stored_host_the_list_no_longer_allows_gets_no_credentials(gateway: Gateway) -> None:
    created = await gateway.create_fathom()
    async with gateway.store() as store:
        assert await store.access(created["id"]) is not None
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:  # a row from before the allow-list
        await conn.execute(
            "update integrations set base_url = 'http://169.254.169.254' where id = $1", uuid.UUID(created["id"])
        )
    finally:
        await conn.close()
    async with gateway.store() as store:  # what the pull worker asks for before every run
        with pytest.raises(HostNotAllowed, match=r"169\.254\.169\.254"):
            await store.access(created["id"])


async def test_register_webhook_and_delete_on_disable(gateway: Gateway) -> None:
    created = await gateway.create_fathom(
        webhook_secret=None, register_webhook=True, public_base_url="https://hooks.example.test/"
    )
    [register] = gateway.fake.webhook_requests
    sent = json.loads(register.content)
    assert register.headers["x-api-key"] == "fathom-key-123"
    assert sent["destination_url"] == f"https://hooks.example.test/v1/webhooks/fathom/{created['id']}"
    assert sent["triggered_for"] == ["my_recordings", "shared_external_recordings"]
    assert all(
        sent[f] is True
        for f in ("include_transcript", "include_summary", "include_action_items", "include_crm_matches")
    )
    assert created["webhook_url"] == sent["destination_url"]
    [(hook_id, secret)] = gateway.fake.webhooks.items()
    # The returned secret is what verifies deliveries now.
    body = b'{"recording_id": 99}'
    assert (await gateway.deliver(created["id"], body, secret=secret)).status_code == 202

    disabled = await gateway.client.delete(f"/v1/integrations/{created['id']}", headers=ADMIN)
    assert disabled.status_code == 200
    assert disabled.json()["webhook_registered"] is False
    assert gateway.fake.webhook_requests[-1].method == "DELETE"
    assert gateway.fake.webhook_requests[-1].url.path.endswith(f"/webhooks/{hook_id}")
    assert gateway.fake.webhooks == {}


async def test_disable_treats_404_as_gone_and_keeps_failures_on_record(gateway: Gateway) -> None:
    first = await gateway.create_fathom(webhook_secret=None, register_webhook=True, triggered_for=["my_recordings"])
    assert json.loads(gateway.fake.webhook_requests[0].content)["triggered_for"] == ["my_recordings"]
    gateway.fake.webhooks.clear()  # deleted in Fathom's UI meanwhile: DELETE answers 404
    gone = await gateway.client.delete(f"/v1/integrations/{first['id']}", headers=ADMIN)
    assert gone.json()["webhook_registered"] is False
    assert gone.json()["last_error"] is None

    second = await gateway.create_fathom(webhook_secret=None, register_webhook=True)
    gateway.fake.delete_status = 500
    failed = await gateway.client.delete(f"/v1/integrations/{second['id']}", headers=ADMIN)
    assert failed.status_code == 200
    assert failed.json()["status"] == "disabled"
    assert failed.json()["webhook_registered"] is True
    assert "webhook not deleted" in failed.json()["last_error"]


async def test_register_webhook_only_for_fathom_and_provider_errors_are_502(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws",
            "provider": "gong",
            "credentials": {"access_key": "a", "access_key_secret": "b"},
            "register_webhook": True,
        },
        headers=ADMIN,
    )
    assert response.status_code == 400
    gateway.fake.webhook_requests.clear()
    broken = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws",
            "provider": "fathom",
            "credentials": {"api_key": "k"},
            "register_webhook": True,
            "base_url": "http://fake.provider.test/nothing-here",
        },
        headers=ADMIN,
    )
    assert broken.status_code == 502
    assert broken.json()["error"] == "provider_error"
    assert (await gateway.client.get("/v1/integrations", headers=ADMIN)).json() == []


async def test_api_tokens(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/tokens", json={"workspace_ids": ["ws-1", "ws-2", "ws-1"], "name": "linker reader"}, headers=ADMIN
    )
    assert response.status_code == 201
    token_id, token = response.json()["id"], response.json()["token"]
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        row = await conn.fetchrow("select * from api_tokens where id = $1", uuid.UUID(token_id))
        assert row["token_hash"] == hash_api_token(token)
        assert row["workspace_ids"] == ["ws-1", "ws-2"]
        assert token not in str(dict(row))
        assert (await gateway.client.delete(f"/v1/tokens/{token_id}", headers=ADMIN)).status_code == 204
        assert await conn.fetchval("select revoked_at is not null from api_tokens where id = $1", uuid.UUID(token_id))
    finally:
        await conn.close()
    assert (await gateway.client.delete(f"/v1/tokens/{uuid.uuid4()}", headers=ADMIN)).status_code == 404
    for bad in ({"workspace_ids": [], "name": "x"}, {"workspace_ids": ["bad id"], "name": "x"}, {"name": "x"}):
        assert (await gateway.client.post("/v1/tokens", json=bad, headers=ADMIN)).status_code == 400
    assert (await gateway.client.post("/v1/tokens", json={"workspace_ids": ["a"], "name": "x"})).status_code == 401
