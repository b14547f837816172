"""Unknown bearer tokens (issue #20, item 3): a flood of them can neither evict the known tokens'
cached answers (every legitimate request would lose the fast path) nor cost a query each without
limit (429 with Retry-After per client). On the real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import hash_api_token
from callstream.linker import Settings, build_app

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_unknown_tokens_do_not_evict_known_ones(cached_linker: Client, seed: Seed, read_only_url: str) -> None:
    token = await seed.token("acme")
    auth = cached_linker.app.state.hot_links._auth  # the app's own, as the routes and the hot path use it
    pool = await asyncpg.create_pool(read_only_url, min_size=1, max_size=2)  # on this test's loop
    auth._pool = lambda: pool
    try:
        assert await auth._lookup(hash_api_token(token)) is not None
        assert auth.known(f"Bearer {token}") is not None
        for i in range(10_000):
            assert await auth._lookup(hash_api_token(f"cs_unknown_{i:06d}_padding_padding")) is None
        # the known token is still answered from memory (the hot path's check, no query)
        assert auth.known(f"Bearer {token}") is not None
    finally:
        await pool.close()


@pytest.fixture
async def cached_linker(linker_env: None, jetstream: object, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """The linker with the token cache of a deployment (the shared fixture turns it off)."""
    monkeypatch.setenv("CALLSTREAM_LINKER_TOKEN_CACHE_SECONDS", "60")
    async with AsyncTestClient(build_app(Settings())) as client:  # type: ignore[call-arg]
        yield client


async def test_unknown_tokens_from_one_client_are_rate_limited(cached_linker: Client, seed: Seed) -> None:
    linker = cached_linker
    token = await seed.token("acme")
    assert (await linker.get("/v1/messages?workspace_id=acme", headers=bearer(token))).status_code == 200
    statuses = []
    retry_after = None
    for i in range(200):
        r = await linker.get("/v1/messages?workspace_id=acme", headers=bearer(f"cs_guess_{i:06d}_xxxxxxxxxxxxxxxx"))
        statuses.append(r.status_code)
        if r.status_code == 429:
            retry_after = r.headers.get("retry-after")
            assert set(r.json()) == {"error", "detail"}
            break
    assert 429 in statuses, statuses[-5:]
    assert statuses.count(401) >= 10  # a few mistyped tokens are answered as usual
    assert retry_after is not None
    assert int(retry_after) >= 1
    # the token this client already used keeps working meanwhile
    ok = await linker.get("/v1/messages?workspace_id=acme", headers=bearer(token))
    assert ok.status_code == 200, ok.text


async def test_a_known_tokens_expired_answer_costs_its_client_nothing(
    cached_linker: Client, seed: Seed, read_only_url: str
) -> None:
    """When a known token's cached answer expires under load, every request in flight joins one
    look-up: none of them is charged as an unknown token (bench/linker saw 429s for its own valid
    token: 64 connections against a burst of 30)."""
    token = await seed.token("acme")
    auth = cached_linker.app.state.hot_links._auth
    pool = await asyncpg.create_pool(read_only_url, min_size=1, max_size=2)  # on this test's loop
    auth._pool = lambda: pool
    request = SimpleNamespace(headers={"authorization": f"Bearer {token}"}, client=SimpleNamespace(host="10.0.0.7"))
    try:
        assert await auth(request) is not None
        later = auth._clock() + 3600  # its answer has expired
        auth._clock = lambda: later
        answers = await asyncio.gather(*(auth(request) for _ in range(100)), return_exceptions=True)
        assert [type(a).__name__ for a in answers if not hasattr(a, "workspaces")] == []
    finally:
        await pool.close()
