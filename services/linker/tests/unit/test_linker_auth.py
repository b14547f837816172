"""Token look-ups: concurrent requests for one token share one query."""

from __future__ import annotations

import asyncio

from callstream.linker._auth import Authenticator


async def test_concurrent_token_lookups_share_one_query() -> None:
    class Pool:
        queries = 0

        async def fetchrow(self, *_: object) -> dict[str, list[str]]:
            Pool.queries += 1
            await asyncio.sleep(0.01)
            return {"workspace_ids": ["acme"]}

    auth = Authenticator(lambda: Pool(), None, ttl_seconds=5)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(*(auth._lookup("h") for _ in range(20)))
    assert Pool.queries == 1
    assert {r.workspaces for r in results if r} == {frozenset({"acme"})}
    assert len(results) == 20
