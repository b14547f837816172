"""Hostile requests against every HTTP service: each gets the right 4xx with a small JSON error, and
nothing is published or stored. Then the logs and the database hold none of the secrets used."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from .conftest import Stack, fathom_meeting, signed_headers

HUGE = 16 * 1024 * 1024 + 1
FAKE_TOKEN = "cs_not_a_real_token_0000000000"


def _case(service, method, path, expected, *, auth=True, **kwargs):
    return (service, method, path, expected, auth, kwargs)


# (service, method, path, expected status, send the admin token?, request kwargs)
TABLE = [
    # admin API of the gateway
    _case("gateway", "POST", "/v1/integrations", 401, auth=False, json={}),
    _case("gateway", "GET", "/v1/integrations", 401, auth=False),
    _case("gateway", "POST", "/v1/integrations", 400, content=b"{not json"),
    _case("gateway", "POST", "/v1/integrations", 400, json=[1, 2, 3]),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={"workspace_id": "../etc", "provider": "fathom", "credentials": {"api_key": "k"}},
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={"workspace_id": "w" * 65, "provider": "fathom", "credentials": {"api_key": "k"}},
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={"workspace_id": "acme", "provider": "zoom", "credentials": {"api_key": "k"}},
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={"workspace_id": "acme", "provider": "gong", "credentials": {"api_key": "not gong credentials"}},
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={"workspace_id": 42, "provider": "fathom", "credentials": {"api_key": "k"}},
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={
            "workspace_id": "acme",
            "provider": "fathom",
            "credentials": {"api_key": "k"},
            "webhook_secret": "not-a-whsec",
        },
    ),
    _case(
        "gateway",
        "POST",
        "/v1/integrations",
        400,
        json={
            "workspace_id": "acme",
            "provider": "fathom",
            "credentials": {"api_key": "k"},
            "base_url": "javascript:alert(1)",
        },
    ),
    _case("gateway", "GET", "/v1/integrations/..%2F..%2Fetc%2Fpasswd", 404),
    _case("gateway", "GET", f"/v1/integrations/{uuid.uuid4()}", 404),
    _case("gateway", "DELETE", f"/v1/integrations/{uuid.uuid4()}", 404),
    _case("gateway", "POST", "/v1/tokens", 401, auth=False, json={"workspace_ids": ["acme"], "name": "x"}),
    _case("gateway", "POST", "/v1/tokens", 400, json={"workspace_ids": [], "name": "x"}),
    _case("gateway", "POST", "/v1/tokens", 400, json={"workspace_ids": ["bad id!"], "name": "x"}),
    _case("gateway", "POST", "/v1/tokens", 400, json={"workspace_ids": [f"w{i}" for i in range(100_000)], "name": "x"}),
    _case("gateway", "GET", "/v1/oauth/zoom/authorize?workspace_id=acme", 404),
    _case("gateway", "GET", "/v1/oauth/fathom/callback?code=abc&state=never-issued", 400),
    # the linker
    _case("linker", "GET", f"/v1/messages/{uuid.uuid4()}", 401, auth=False),
    _case("linker", "GET", f"/v1/messages/{uuid.uuid4()}", 404),
    _case("linker", "GET", "/v1/messages/..%2F..%2Fetc%2Fpasswd", 404),
    _case("linker", "GET", "/v1/links?workspace_id=acme&source=fathom", 400),
    _case("linker", "GET", "/v1/links?workspace_id=acme&source=zoom&external_id=1", 400),
    _case("linker", "GET", "/v1/links?workspace_id=acme&source=fathom&external_id=404404", 404),
    _case("linker", "POST", "/v1/links/resolve", 400, json={"message_ids": [str(uuid.uuid4())] * 1001}),
    _case("linker", "POST", "/v1/links/resolve", 400, json={"message_ids": [{"$gt": ""}]}),
    _case("linker", "POST", "/v1/links/resolve", 400, content=b"\xff\xfe garbage"),
    _case("linker", "GET", "/v1/messages?workspace_id=acme&limit=100000", 400),
    # bounded answers (issue #20): no list past 200 items, the token before the resolve body, its cap
    _case("linker", "GET", "/v1/messages?workspace_id=acme&limit=201", 400),
    _case("linker", "GET", "/v1/features/f1/messages?workspace_id=acme&limit=5000", 400),
    _case("linker", "GET", "/features/f1/messages?workspace_id=acme&limit=5000", 400),
    _case("linker", "GET", "/v1/features/f1/messages?workspace_id=acme&include=everything", 400),
    _case("linker", "GET", "/v1/contacts?workspace_id=acme&limit=201", 400),
    _case("linker", "POST", "/v1/links/resolve", 401, auth=False, content=b"\xff" * 1000),
    _case("linker", "POST", "/v1/links/resolve", 413, content=b'{"message_ids": []' + b" " * 1024 * 1024 + b"}"),
    _case("linker", "GET", "/v1/messages?workspace_id=acme&cursor=%27%3B%20drop%20table%20messages", 400),
    # the scheduler's admin API
    _case("scheduler", "POST", f"/v1/integrations/{uuid.uuid4()}/syncs", 401, auth=False, json={"mode": "latest"}),
    _case("scheduler", "POST", f"/v1/integrations/{uuid.uuid4()}/syncs", 404, json={"mode": "latest"}),
    _case("scheduler", "POST", "/v1/integrations/not-a-uuid/syncs", 404, json={"mode": "latest"}),
    _case("scheduler", "GET", f"/v1/integrations/{uuid.uuid4()}/sync-state", 404),
]


async def test_every_hostile_request_gets_the_right_4xx(stack: Stack) -> None:
    # One stack for the whole table (starting four processes per row would take minutes); every
    # row is checked and all mismatches are reported together.
    wrong = []
    for service, method, path, expected, auth, kwargs in TABLE:
        headers = {"Authorization": f"Bearer {stack.admin_token(service)}"} if auth else {}
        async with httpx.AsyncClient(base_url=stack.url(service), timeout=30) as client:
            r = await client.request(method, path, headers=headers, **kwargs)
        try:
            body = r.json()
        except ValueError:
            body = None
        shape_ok = isinstance(body, dict) and set(body) == {"error", "detail"} and len(r.content) < 4096
        if r.status_code != expected or not shape_ok:
            wrong.append(f"{service} {method} {path[:60]}: {r.status_code} (want {expected}) {r.text[:160]}")
    assert wrong == [], "\n".join(wrong)
    await _nothing_published_or_stored(stack)


async def test_a_wrong_bearer_token_is_401_everywhere(stack: Stack) -> None:
    for service, path in (
        ("gateway", "/v1/integrations"),
        ("linker", "/v1/messages?workspace_id=acme"),
        ("normalizer", "/v1/workspaces/acme/retention"),
        ("scheduler", "/v1/sync-state?workspace_id=acme"),
    ):
        async with httpx.AsyncClient(base_url=stack.url(service)) as client:
            r = await client.get(path, headers={"Authorization": f"Bearer {FAKE_TOKEN}"})
        assert r.status_code == 401, (service, r.text)
        assert r.json()["error"]


ADMIN_ROUTES = {
    "gateway": "/v1/integrations",
    "linker": "/v1/messages?workspace_id=acme",
    "normalizer": "/v1/workspaces/acme/retention",
    "scheduler": "/v1/sync-state?workspace_id=acme",
}


async def test_each_admin_token_opens_its_own_service_only(stack: Stack) -> None:
    """One service's admin token is a 401 at every other: the linker's environment carries no
    gateway-admin power."""
    tokens = stack.admin_tokens
    assert set(tokens) == set(ADMIN_ROUTES)
    assert len(set(tokens.values())) == len(tokens)
    answers = {}
    for service, path in ADMIN_ROUTES.items():
        async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as client:
            for owner, token in tokens.items():
                r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                answers[(owner, service)] = r.status_code
    assert answers == {(o, s): 200 if o == s else 401 for o in tokens for s in ADMIN_ROUTES}
    await _nothing_published_or_stored(stack)


async def test_hostile_webhooks_are_rejected_and_nothing_is_published(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    good = json.dumps(fathom_meeting(610001)).encode()
    now = datetime.now(tz=UTC)
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("no signature", good, {"content-type": "application/json"}, 401),
        ("bad signature", good, {**signed_headers(secret, good, "m1"), "webhook-signature": "v1,AAAA"}, 401),
        ("signed other body", good, signed_headers(secret, b'{"recording_id": 1}', "m2"), 401),
        ("stale timestamp", good, signed_headers(secret, good, "m3", now - timedelta(minutes=6)), 401),
        ("future timestamp", good, signed_headers(secret, good, "m4", now + timedelta(minutes=6)), 401),
        ("other secret", good, signed_headers("whsec_" + "QUJD" * 8, good, "m5"), 401),
        ("not json", b"{nope", signed_headers(secret, b"{nope", "m6"), 400),
        ("not a meeting", b'{"title":"x"}', signed_headers(secret, b'{"title":"x"}', "m7"), 400),
        ("wrong id type", b'{"recording_id":{"a":1}}', signed_headers(secret, b'{"recording_id":{"a":1}}', "m8"), 400),
    ]
    # The webhook path takes signatures only: an admin token (any service's) opens nothing there.
    for service, token in stack.admin_tokens.items():
        admin = {"Authorization": f"Bearer {token}"}
        cases += [
            (f"{service} admin, no signature", good, {"content-type": "application/json", **admin}, 401),
            (
                f"{service} admin, bad signature",
                good,
                {**signed_headers(secret, good, "m1"), "webhook-signature": "v1,AAAA", **admin},
                401,
            ),
            (
                f"{service} admin, stale",
                good,
                {**signed_headers(secret, good, "m3", now - timedelta(minutes=6)), **admin},
                401,
            ),
        ]
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        for name, body, headers, expected in cases:
            r = await client.post(f"/v1/webhooks/fathom/{integration_id}", content=body, headers=headers)
            assert r.status_code == expected, (name, r.text)
            assert set(r.json()) == {"error", "detail"}, name
        # unknown integration, traversal in the id, and an oversize body (declared and streamed)
        for path in (f"/v1/webhooks/fathom/{uuid.uuid4()}", "/v1/webhooks/fathom/..%2F..%2Fadmin"):
            r = await client.post(path, content=good, headers=signed_headers(secret, good, "m9"))
            assert r.status_code == 404, r.text
        big = b'{"recording_id": 1, "pad": "' + b"x" * HUGE + b'"}'
        r = await client.post(
            f"/v1/webhooks/fathom/{integration_id}", content=big, headers=signed_headers(secret, big, "m10")
        )
        assert r.status_code == 413, r.text[:200]

        async def chunks():
            for _ in range(17):
                yield b"x" * (1024 * 1024)

        r = await client.post(
            f"/v1/webhooks/fathom/{integration_id}", content=chunks(), headers={**signed_headers(secret, b"", "m11")}
        )
        assert r.status_code == 413, r.text[:200]
        # a disabled integration rejects even a perfectly signed delivery
        admin = {"Authorization": f"Bearer {stack.admin_token('gateway')}"}
        assert (await client.delete(f"/v1/integrations/{integration_id}", headers=admin)).status_code == 200
        r = await client.post(
            f"/v1/webhooks/fathom/{integration_id}", content=good, headers=signed_headers(secret, good, "m12")
        )
        assert r.status_code == 404, r.text
    await _nothing_published_or_stored(stack)


async def _nothing_published_or_stored(stack: Stack) -> None:
    import nats

    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        for stream in ("CALLS_RAW", "SYNC", "MESSAGES", "DLQ"):
            assert (await js.stream_info(stream)).state.messages == 0, stream
    finally:
        await nc.close()
    conn = await asyncpg.connect(stack.env["CALLSTREAM_DATABASE_URL"])
    try:
        assert await conn.fetchval("select count(*) from messages") == 0
        assert await conn.fetchval("select count(*) from api_tokens") == 0
        assert await conn.fetchval("select count(*) from integrations where workspace_id <> 'acme'") == 0
    finally:
        await conn.close()


async def test_unknown_tokens_from_one_client_get_429_with_retry_after(stack: Stack) -> None:
    """Each made-up token costs the linker a query: one client may try a few, then it is told to
    wait (CALLSTREAM_LINKER_UNKNOWN_TOKEN_BURST, 30 by default) instead of being answered."""
    async with httpx.AsyncClient(base_url=stack.url("linker"), timeout=30) as client:
        statuses = []
        for i in range(100):
            r = await client.get(
                "/v1/messages?workspace_id=acme", headers={"Authorization": f"Bearer cs_guess_{i:08d}"}
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert set(r.json()) == {"error", "detail"}
                break
    assert set(statuses[:-1]) == {401}
    assert statuses[-1] == 429, statuses[-3:]


async def test_a_client_that_never_finishes_its_headers_is_cut_off(
    service_env: dict[str, str], nats_url: str, jetstream: object, start_service: Any
) -> None:
    """Every HTTP server closes a connection whose headers have not arrived within
    CALLSTREAM_HTTP_HEADER_TIMEOUT_SECONDS (30 s by default; 1 s here), whichever server it runs."""
    env = {**service_env, "CALLSTREAM_HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    procs = {name: start_service(name, env, wait=False) for name in ("gateway", "linker", "scheduler", "normalizer")}
    for name, proc in procs.items():
        await asyncio.to_thread(proc.wait_ready)
        host, _, port = proc.url.removeprefix("http://").partition(":")
        for request in (b"", b"GET /health/live HTTP/1.1\r\nHost: x\r\n"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            started = time.monotonic()
            try:
                while await asyncio.wait_for(reader.read(4096), timeout=6):
                    pass
            except TimeoutError:
                pytest.fail(f"{name}: a connection that sent {request!r} was still open after 6 s")
            except ConnectionResetError:
                pass
            finally:
                writer.close()
            assert time.monotonic() - started < 6, name
        async with httpx.AsyncClient(base_url=proc.url, timeout=5) as client:
            assert (await client.get("/health/live")).status_code == 200, name
