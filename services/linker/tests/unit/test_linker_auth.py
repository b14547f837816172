"""Token look-ups: concurrent requests for one token share one query; what the hot path may
answer without one, and for how long."""

from __future__ import annotations

import asyncio

from callstream.contracts import hash_api_token
from callstream.linker._auth import Authenticator
from callstream.runtime import AdminToken

NO_ADMIN = AdminToken(None, "CALLSTREAM_LINKER_ADMIN_TOKEN")


async def test_concurrent_token_lookups_share_one_query() -> None:
    class Pool:
        queries = 0

        async def fetchrow(self, *_: object) -> dict[str, list[str]]:
            Pool.queries += 1
            await asyncio.sleep(0.01)
            return {"workspace_ids": ["acme"]}

    auth = Authenticator(lambda: Pool(), NO_ADMIN, ttl_seconds=5)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(*(auth._lookup("h") for _ in range(20)))
    assert Pool.queries == 1
    assert {r.workspaces for r in results if r} == {frozenset({"acme"})}
    assert len(results) == 20


class _Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class _Rows:
    """A pool whose api_tokens rows the test changes (a revoked token has none)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}
        self.queries = 0

    async def fetchrow(self, _: str, token_hash: str) -> dict[str, list[str]] | None:
        self.queries += 1
        found = self.rows.get(token_hash)
        return None if found is None else {"workspace_ids": found}


async def test_known_tokens_stop_working_when_their_lookup_expires() -> None:
    """``known`` keeps answers by header value: a revoked token must still stop working one TTL
    after it was looked up, however often it is sent, whichever way "Bearer" is spelled."""
    clock, pool = _Clock(), _Rows()
    auth = Authenticator(
        lambda: pool, AdminToken("admin-secret", "CALLSTREAM_LINKER_ADMIN_TOKEN"), ttl_seconds=5, clock=clock
    )  # type: ignore[arg-type,return-value]
    pool.rows[hash_api_token("t1")] = ["acme"]

    assert auth.known("Bearer t1") is None  # not looked up yet: the full path answers
    await auth._lookup(hash_api_token("t1"))
    for header in ("Bearer t1", "bearer t1", "BEARER  t1 "):
        access = auth.known(header)
        assert access is not None
        assert access.workspaces == frozenset({"acme"})
    del pool.rows[hash_api_token("t1")]  # revoked
    clock.now += 4.9
    assert auth.known("Bearer t1") is not None  # within the TTL, as before
    clock.now += 0.2
    assert auth.known("Bearer t1") is None
    assert auth.known("bearer t1") is None
    assert await auth._lookup(hash_api_token("t1")) is None
    assert auth.known("Bearer t1") is None  # known to be unknown: still the full path's to answer

    admin = auth.known("Bearer admin-secret")
    assert admin is not None
    assert admin.workspaces is None
    clock.now += 10_000
    assert auth.known("Bearer admin-secret") is admin  # the admin token does not expire
    assert "Bearer admin-secret" not in auth._by_header  # always compared in constant time
    assert auth.known("Bearer admin-secre") is None
    assert auth.known("Basic admin-secret") is None
    assert auth.known("Bearer ") is None
    assert pool.queries == 2


async def test_header_answers_are_bounded_and_go_with_the_lookups() -> None:
    """Padded spellings of a token are answered but not kept (they could fill memory), and when
    the looked-up answers are dropped for room, those kept by header go with them: a revoked
    token is then looked up again at once, as before headers were kept."""
    clock, pool = _Clock(), _Rows()
    auth = Authenticator(lambda: pool, NO_ADMIN, ttl_seconds=5, clock=clock)  # type: ignore[arg-type,return-value]
    pool.rows[hash_api_token("t1")] = ["acme"]
    await auth._lookup(hash_api_token("t1"))

    for padding in range(1, 50):
        assert auth.known("Bearer " + " " * 200 * padding + "t1") is not None
    assert auth.known("Bearer t1") is not None
    assert list(auth._by_header) == ["Bearer t1"]

    del pool.rows[hash_api_token("t1")]  # revoked
    for n in range(10_000):  # unknown tokens have a cache of their own: the known one stays
        await auth._lookup(hash_api_token(f"unknown-{n}"))
    assert auth.known("Bearer t1") is not None
    for n in range(10_000):  # other known tokens fill the look-up cache, which drops the oldest
        pool.rows[hash_api_token(f"other-{n}")] = ["acme"]
        await auth._lookup(hash_api_token(f"other-{n}"))
    assert auth.known("Bearer t1") is None
    assert await auth._lookup(hash_api_token("t1")) is None
