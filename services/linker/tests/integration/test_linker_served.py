"""The linker as ``callstream-linker serve`` runs it: granian, cached links answered over RSGI in
front of the app, everything else through the ASGI adapter to litestar. A link asked twice is
answered first by the route (the cache fills) and then from memory: the two must be the same
bytes and headers, on the wire."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
RSGI = 'interface="rsgi",service="linker"'  # answered by the RSGI first answer, not the ASGI wrapper


def _comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    skip = ("date", "x-request-id")
    return (
        response.status_code,
        response.content,
        sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in skip),
    )


async def _metric(client: httpx.AsyncClient, name: str, labels: str = 'service="linker"') -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not on /metrics")


async def test_a_link_from_memory_is_the_routes_answer_on_the_wire(linker_url: str, seed: Any) -> None:
    await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    params = {"workspace_id": "acme", "source": "fathom", "external_id": "884120457"}
    async with httpx.AsyncClient(base_url=linker_url, timeout=10) as client:
        deadline = time.monotonic() + 10
        while await _metric(client, "callstream_linker_link_cache_live") != 1:
            assert time.monotonic() < deadline, "the event feed never became live"
            await asyncio.sleep(0.05)
        token = await seed.token("acme")
        auth = {"Authorization": f"Bearer {token}"}
        by_route = await client.get("/v1/links", params=params, headers=auth)
        before = await _metric(client, "callstream_linker_links_from_memory_total", RSGI)
        from_memory = await client.get("/v1/links", params=params, headers={**auth, "x-request-id": "wire-1"})
        assert await _metric(client, "callstream_linker_links_from_memory_total", RSGI) == before + 1
        assert await _metric(client, "callstream_linker_link_cache_entries") >= 1
        assert by_route.status_code == 200
        assert by_route.json()["url"] == SHARE
        assert _comparable(from_memory) == _comparable(by_route)
        assert from_memory.headers["x-request-id"] == "wire-1"

        fresh = {"Authorization": f"Bearer {await seed.token('acme')}", "If-None-Match": by_route.headers["etag"]}
        route_304 = await client.get("/v1/links", params=params, headers=fresh)  # the token is new: the route
        memory_304 = await client.get("/v1/links", params=params, headers=fresh)
        assert await _metric(client, "callstream_linker_links_from_memory_total", RSGI) == before + 2
        assert route_304.status_code == 304
        assert _comparable(memory_304) == _comparable(route_304)

        resolved = await client.post(
            "/v1/links/resolve", json={"message_ids": [by_route.json()["message_id"]]}, headers=auth
        )
        assert resolved.status_code == 200
        assert resolved.json()["links"][by_route.json()["message_id"]]["url"] == SHARE
        missing = await client.get("/v1/nowhere", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
