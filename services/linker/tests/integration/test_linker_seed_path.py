"""``GET /features/{feature_id}/messages`` at the seed's path (no ``/v1``), as the existing frontend
calls it: the same handler as ``/v1/features/{feature_id}/messages``, so the same auth, fields,
errors and ETag."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)

SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _linked(seed: Seed) -> str:
    token: str = await seed.token("acme")
    customer = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    mid = await seed.message(
        "acme",
        "fathom",
        "1",
        {"recording_url": SHARE, "raw_session_data": {"big": "x" * 100}},
        sent_at=T0,
        customer_id=customer,
        content="Priya: hi",
        author_name="Devon",
        channel_name="fathom",
    )
    await seed.conn.execute("insert into features (workspace_id, id, name) values ('acme', 'f1', 'SSO')")
    await seed.conn.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id, message_id) values"
        " ('acme', 'f1', 'fathom', '1', $1)",
        mid,
    )
    return token


async def test_the_seed_path_answers_like_v1(linker: Client, seed: Seed) -> None:
    token = await _linked(seed)
    params = {"workspace_id": "acme"}
    # The old frontend cannot ask for transcripts: its path includes them, as /v1 does when asked.
    v1 = await linker.get("/v1/features/f1/messages", params={**params, "include": "content"}, headers=bearer(token))
    old = await linker.get("/features/f1/messages", params=params, headers=bearer(token))
    assert v1.status_code == 200, v1.text
    assert old.status_code == 200, old.text
    assert old.json() == v1.json()
    assert old.json()[0]["content"] == "Priya: hi"
    assert old.json()[0]["link"]["url"] == SHARE
    plain_v1 = await linker.get("/v1/features/f1/messages", params=params, headers=bearer(token))
    assert "content" not in plain_v1.json()[0]
    asked = await linker.get("/features/f1/messages", params={**params, "include": "raw"}, headers=bearer(token))
    assert "content" not in asked.json()[0]  # an explicit include is taken as it is on either path
    assert not {"raw_session_data"} & set(old.json()[0]["message_metadata"])
    for name in ("etag", "cache-control", "content-type", "vary"):
        assert old.headers.get(name) == v1.headers.get(name), name
    tagged = {**bearer(token), "If-None-Match": old.headers["etag"]}
    again = await linker.get("/features/f1/messages", params=params, headers=tagged)
    assert again.status_code == 304

    # The same refusals, byte for byte.
    for path in ("/v1/features/f1/messages", "/features/f1/messages"):
        assert (await linker.get(path, params=params)).status_code == 401
    answers = []
    for path in ("/v1/features/f1/messages", "/features/f1/messages"):
        foreign = await linker.get(path, params={"workspace_id": "globex"}, headers=bearer(token))
        missing = await linker.get(path.replace("f1", "nope"), params=params, headers=bearer(token))
        bad = await linker.get(path, params={"workspace_id": "a b"}, headers=bearer(token))
        answers.append((foreign.status_code, foreign.json(), missing.status_code, missing.json(), bad.status_code))
    assert answers[0] == answers[1]
    assert (answers[0][0], answers[0][2], answers[0][4]) == (404, 404, 400)


async def test_the_seed_path_is_in_the_schema(linker: Client) -> None:
    paths = (await linker.get("/schema/openapi.json")).json()["paths"]
    assert "/features/{feature_id}/messages" in paths
    assert "/v1/features/{feature_id}/messages" in paths


async def test_the_seed_path_on_the_served_linker(linker_url: str, seed: Seed) -> None:
    """Through ``callstream-linker serve`` (granian, the RSGI hot path in front), as deployed."""
    token = await _linked(seed)
    params = {"workspace_id": "acme"}
    async with httpx.AsyncClient(base_url=linker_url, headers=bearer(token), timeout=10) as client:
        v1 = await client.get("/v1/features/f1/messages", params={**params, "include": "content"})
        old = await client.get("/features/f1/messages", params=params)
        assert (old.status_code, old.content) == (200, v1.content)
        assert old.headers["etag"] == v1.headers["etag"]
        refused = await client.get("/features/f1/messages", params=params, headers={"Authorization": ""})
        assert refused.status_code == 401
