"""Bounded answers (issue #20, item 3): no list is longer than 200 items, lists carry no
transcripts or raw provider keys unless asked, ``POST /v1/links/resolve`` authenticates before it
reads a body it caps (unknown tokens: ``test_linker_unknown_tokens.py``). On the real PostgreSQL and NATS."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.linker import _queries as q

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)

HEAVY = {"raw_session_data": {"big": "x" * 5000}, "transcript_data": [{"t": 1}], "raw_call_data": {"id": "1"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _feature_with_message(seed: Seed) -> str:
    token: str = await seed.token("acme")
    mid = await seed.message("acme", "fathom", "1", {"url": "https://fathom.video/calls/1", **HEAVY}, content="A: hi")
    await seed.conn.execute("insert into features (workspace_id, id, name) values ('acme', 'f1', 'SSO')")
    await seed.conn.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id, message_id) values"
        " ('acme', 'f1', 'fathom', '1', $1)",
        mid,
    )
    return token


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages?workspace_id=acme",
        "/v1/features/f1/messages?workspace_id=acme",
        "/features/f1/messages?workspace_id=acme",
        "/v1/contacts?workspace_id=acme",
        "/v1/customers?workspace_id=acme",
        "/v1/features/f1/data-points?workspace_id=acme",
    ],
)
async def test_every_list_caps_limit_at_200(linker: Client, seed: Seed, path: str) -> None:
    token = await _feature_with_message(seed)
    ok = await linker.get(f"{path}&limit=200", headers=bearer(token))
    assert ok.status_code == 200, ok.text
    for limit in (201, 5000):
        r = await linker.get(f"{path}&limit={limit}", headers=bearer(token))
        assert r.status_code == 400, (limit, r.text[:200])
        assert set(r.json()) == {"error", "detail"}
        assert len(r.content) < 4096


async def test_feature_messages_leave_content_and_raw_keys_out_unless_asked(linker: Client, seed: Seed) -> None:
    token = await _feature_with_message(seed)
    for path in ("/v1/features/f1/messages", "/features/f1/messages"):
        plain = await linker.get(path, params={"workspace_id": "acme"}, headers=bearer(token))
        assert plain.status_code == 200, plain.text
        [item] = plain.json()
        if path.startswith("/v1/"):
            assert "content" not in item
        else:  # the seed's path keeps the old answer for the frontend that cannot ask (README)
            assert item["content"] == "A: hi"
        assert not set(HEAVY) & set(item["message_metadata"])
        assert item["message_metadata"]["url"] == "https://fathom.video/calls/1"

        content = await linker.get(path, params={"workspace_id": "acme", "include": "content"}, headers=bearer(token))
        [item] = content.json()
        assert item["content"] == "A: hi"
        assert not set(HEAVY) & set(item["message_metadata"])

        both = await linker.get(
            path, params=[("workspace_id", "acme"), ("include", "content"), ("include", "raw")], headers=bearer(token)
        )
        [item] = both.json()
        assert item["content"] == "A: hi"
        assert set(HEAVY) <= set(item["message_metadata"])

        bad = await linker.get(path, params={"workspace_id": "acme", "include": "everything"}, headers=bearer(token))
        assert bad.status_code == 400


async def test_resolve_checks_the_token_before_reading_the_body(linker: Client, seed: Seed) -> None:
    garbage = b"\xff" * 100
    for headers in ({}, bearer("cs_unknown_token_0000000000000000")):
        r = await linker.post("/v1/links/resolve", content=garbage, headers=headers)
        assert r.status_code == 401, r.text[:200]
    token = await seed.token("acme")
    r = await linker.post("/v1/links/resolve", content=garbage, headers=bearer(token))
    assert r.status_code == 400, r.text[:200]


async def test_resolve_caps_the_body_at_what_1000_ids_need(linker: Client, seed: Seed) -> None:
    token = await seed.token("acme")
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    r = await linker.post("/v1/links/resolve", json={"message_ids": ids}, headers=bearer(token))
    assert r.status_code == 200, r.text[:200]
    assert len(r.json()["links"]) == 1000
    padded = b'{"message_ids": []' + b" " * (1024 * 1024) + b"}"  # valid JSON, a megabyte of it
    r = await linker.post("/v1/links/resolve", content=padded, headers=bearer(token))
    assert r.status_code == 413, r.text[:200]
    assert set(r.json()) == {"error", "detail"}


async def test_a_list_with_transcripts_stops_at_its_byte_bound(seed: Seed, database_url: str) -> None:
    """``include=content`` (or ``raw``) reads the heavy columns only up to a byte bound: the rows
    past it are left out (and the answer says so), at least one row is always answered."""
    await seed.conn.execute("insert into features (workspace_id, id, name) values ('acme', 'f1', 'SSO')")
    for i in range(3):
        mid = await seed.message("acme", "fathom", str(i), {}, content="x" * 1000)
        await seed.conn.execute(
            "insert into message_features (workspace_id, feature_id, source, external_id, message_id) values"
            " ('acme', 'f1', 'fathom', $1, $2)",
            str(i),
            mid,
        )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        cut = await q.feature_messages(pool, "acme", "f1", 200, content=True, max_heavy_bytes=1500)
        assert (len(cut.rows), cut.truncated) == (2, True)
        one = await q.feature_messages(pool, "acme", "f1", 200, content=True, max_heavy_bytes=1)
        assert (len(one.rows), one.truncated) == (1, True)
        light = await q.feature_messages(pool, "acme", "f1", 200, max_heavy_bytes=1)  # no heavy column asked
        assert (len(light.rows), light.truncated) == (3, False)
        assert {r["content"] for r in light.rows} == {None}
        whole = await q.feature_messages(pool, "acme", "f1", 200, content=True)
        assert (len(whole.rows), whole.truncated) == (3, False)
        limited = await q.feature_messages(pool, "acme", "f1", 2, content=True)
        assert (len(limited.rows), limited.truncated) == (2, False)
    finally:
        await pool.close()


async def test_writes_check_the_token_before_reading_a_body(linker: Client, seed: Seed) -> None:
    """Recording data points takes bodies up to 16 MB: an anonymous or read-only caller is answered
    before one is read (litestar would decode it for the route first); a feature link's PUT takes
    at most 16 kB."""
    reader = await seed.token("acme")
    mid = await seed.message("acme", "fathom", "1", {})
    junk = b"\xff" * (4 * 1024 * 1024)  # not even JSON: decoding it first would make it a 400
    path = f"/v1/messages/{mid}/data-points"
    assert (await linker.post(path, content=junk)).status_code == 401
    assert (await linker.post(path, content=junk, headers=bearer(reader))).status_code == 403
    r = await linker.post(f"/v1/messages/{uuid.uuid4()}/data-points", content=junk, headers=bearer(reader))
    assert r.status_code == 404
    big = b'{"feature_name": "x"' + b" " * (1024 * 1024) + b"}"
    for path in (f"/v1/features/f1/messages/{mid}", "/v1/features/f1/messages/by-external/fathom/1?workspace_id=acme"):
        r = await linker.put(path, content=big, headers=bearer(reader))
        assert r.status_code == 413, (path, r.text[:200])
