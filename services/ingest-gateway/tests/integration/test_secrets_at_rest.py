"""No plaintext secret in a database dump, and none (nor a webhook body) in the logs; key rotation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from gateway_harness import ADMIN, ADMIN_TOKEN, SECRET_KEY, WEBHOOK_SECRET, Gateway, signed_headers
from test_oauth import _connect

from callstream.devstack import free_port, pg_dump
from callstream.gateway._reencrypt import reencrypt_all
from callstream.gateway._settings import Settings


async def test_database_dump_holds_no_plaintext_secret(gateway: Gateway) -> None:
    fathom = await gateway.create_fathom(credentials={"api_key": "fathom-plain-key-" + secrets.token_hex(4)})
    gong_secret = "gong-plain-secret-" + secrets.token_hex(4)
    gong = await gateway.client.post(
        "/v1/integrations",
        json={
            "workspace_id": "ws-1",
            "provider": "gong",
            "credentials": {"access_key": "AK1", "access_key_secret": gong_secret},
        },
        headers=ADMIN,
    )
    assert gong.status_code == 201
    registered = await gateway.create_fathom(webhook_secret=None, register_webhook=True)
    oauth = await _connect(gateway, "fathom")
    token = (
        await gateway.client.post("/v1/tokens", json={"workspace_ids": ["ws-1"], "name": "t"}, headers=ADMIN)
    ).json()
    async with gateway.store() as store:
        access = await store.access(oauth["id"])
    assert access is not None
    plaintexts = [
        "fathom-plain-key-",
        gong_secret,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        *gateway.fake.webhooks.values(),
        access.access_token,
        *gateway.fake.refresh_tokens,
        token["token"],
    ]
    dump = pg_dump(gateway.settings.database_url.get_secret_value())
    assert registered["id"] in dump  # the dump really holds the rows
    assert fathom["id"] in dump
    for plaintext in plaintexts:
        assert plaintext
        assert plaintext not in dump, "a secret is stored in plaintext"


async def test_logs_hold_no_secret_token_or_body(
    database_url: str, nats_url: str, jetstream: object, tmp_path: Path
) -> None:
    """The real service process at debug level: its whole log output is searched."""
    port = free_port()
    env = dict(
        os.environ,
        CALLSTREAM_DATABASE_URL=database_url,
        CALLSTREAM_NATS_URL=nats_url,
        CALLSTREAM_GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        CALLSTREAM_SECRET_KEY=SECRET_KEY,
        CALLSTREAM_GATEWAY_PORT=str(port),
        CALLSTREAM_LOG_LEVEL="debug",
        CALLSTREAM_LOG_FORMAT="json",
    )
    log_file = tmp_path / "gateway.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "callstream-gateway"), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    body_marker = "transcript-line-" + secrets.token_hex(6)
    api_key, gong_secret = "fathom-key-" + secrets.token_hex(6), "gong-secret-" + secrets.token_hex(6)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            fathom = await client.post(
                "/v1/integrations",
                json={
                    "workspace_id": "ws-l",
                    "provider": "fathom",
                    "credentials": {"api_key": api_key},
                    "webhook_secret": WEBHOOK_SECRET,
                },
                headers=ADMIN,
            )
            assert fathom.status_code == 201
            gong = await client.post(
                "/v1/integrations",
                json={
                    "workspace_id": "ws-l",
                    "provider": "gong",
                    "credentials": {"access_key": "AK", "access_key_secret": gong_secret},
                },
                headers=ADMIN,
            )
            assert gong.status_code == 201
            body = ('{"recording_id": 5, "transcript": [{"text": "' + body_marker + '"}]}').encode()
            path = f"/v1/webhooks/fathom/{fathom.json()['id']}"
            assert (await client.post(path, content=body, headers=signed_headers(body))).status_code == 202
            wrong = "whsec_" + base64.b64encode(b"x" * 24).decode()
            assert (
                await client.post(path, content=body, headers=signed_headers(body, secret=wrong))
            ).status_code == 401
            bad_admin = await client.get("/v1/integrations", headers={"Authorization": "Bearer guessed-admin-token"})
            assert bad_admin.status_code == 401
            token = (
                await client.post("/v1/tokens", json={"workspace_ids": ["ws-l"], "name": "t"}, headers=ADMIN)
            ).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    log_text = log_file.read_text()
    assert "webhook rejected" in log_text  # the log really captured the requests
    assert "integration created" in log_text
    assert "webhook accepted" in log_text
    secret_values = [
        api_key,
        gong_secret,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        token["token"],
        ADMIN_TOKEN,
        SECRET_KEY.split(":", 1)[1],
        "guessed-admin-token",
        body_marker,
    ]
    for value in secret_values:
        assert value not in log_text


async def test_reencrypt_moves_every_secret_to_the_newest_key(gateway: Gateway) -> None:
    created = await gateway.create_fathom()
    oauth = await _connect(gateway, "gong")
    old = gateway.settings.secret_key.get_secret_value()
    new_key = "k2:" + secrets.token_urlsafe(32)
    rotated = Settings(**{**_settings_values(gateway.settings), "CALLSTREAM_SECRET_KEY": f"{new_key},{old}"})
    dsn = gateway.settings.database_url.get_secret_value()
    conn = await asyncpg.connect(dsn)
    try:
        assert await reencrypt_all(conn, rotated.cipher()) == 3  # fathom credentials + secret, gong credentials
        assert await reencrypt_all(conn, rotated.cipher()) == 0  # idempotent
        envelopes = await conn.fetch("select credentials, webhook_secret from integrations")
    finally:
        await conn.close()
    only_new = rotated.cipher().__class__.from_setting(new_key)
    for row in envelopes:
        for envelope in row:
            if envelope is not None:
                assert only_new.key_id_of(envelope) == "k2"
    from callstream.gateway import IntegrationStore

    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
    try:
        new_only_settings = Settings(**{**_settings_values(gateway.settings), "CALLSTREAM_SECRET_KEY": new_key})
        store = IntegrationStore.from_settings(pool, new_only_settings)
        assert (await store.access(created["id"])).api_key == "fathom-key-123"  # type: ignore[union-attr]
        assert (await store.access(oauth["id"])).access_token  # type: ignore[union-attr]
        await store.aclose()
    finally:
        await pool.close()


def _settings_values(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        values[field.validation_alias if isinstance(field.validation_alias, str) else name] = value
    return values
