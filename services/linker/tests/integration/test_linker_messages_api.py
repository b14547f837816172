"""Messages: one, a keyset-paginated list, and the features endpoint old clients read."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.linker._app import read_only_dsn

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
HEAVY = {"raw_session_data": {"big": "x" * 5000}, "transcript_data": [{"t": 1}], "raw_call_data": {"id": "1"}}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_one_message_with_customer_and_link(linker: Client, seed: Seed, admin_token: str) -> None:
    customer = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    mid = await seed.message(
        "acme",
        "fathom",
        "884120457",
        {"recording_url": SHARE, "title": "Pilot", "summary": "s", **HEAVY},
        sent_at=T0,
        customer_id=customer,
        title="Pilot",
        content="Devon: hello",
        author_name="Devon",
        author_email="devon@quillmere.com",
        channel_name="fathom",
    )
    r = await linker.get(f"/v1/messages/{mid}", headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == str(mid)
    assert (body["workspace_id"], body["source"], body["external_id"], body["title"]) == (
        "acme",
        "fathom",
        "884120457",
        "Pilot",
    )
    assert datetime.fromisoformat(body["sent_at"]) == T0
    assert body["author"] == {"name": "Devon", "email": "devon@quillmere.com", "id": None}
    assert body["customer"] == {
        "id": str(customer),
        "name": "Quillmere Systems",
        "domain": "quillmere.com",
        "external_system": "hubspot",
    }
    assert body["content"] == "Devon: hello"
    assert body["link"] == {"url": SHARE, "kind": "recording", "origin": "metadata.recording_url", "reason": None}
    assert body["message_metadata"] == {"recording_url": SHARE, "title": "Pilot", "summary": "s"}

    raw = (await linker.get(f"/v1/messages/{mid}", params={"include": "raw"}, headers=bearer(admin_token))).json()
    assert raw["message_metadata"]["raw_session_data"] == HEAVY["raw_session_data"]
    assert set(HEAVY) <= set(raw["message_metadata"])

    trimmed = await linker.get(f"/v1/messages/{mid}", params={"fields": "title,link"}, headers=bearer(admin_token))
    assert set(trimmed.json()) == {"id", "title", "link"}
    bad = await linker.get(f"/v1/messages/{mid}", params={"fields": "title,password"}, headers=bearer(admin_token))
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_fields")
    assert (await linker.get("/v1/messages/not-a-uuid", headers=bearer(admin_token))).status_code == 404


async def test_pagination_is_stable_under_concurrent_inserts(
    linker: Client, seed: Seed, database_url: str, admin_token: str
) -> None:
    rnd = random.Random(7)
    original: set[str] = set()
    for n in range(90):
        # Few distinct times, so many rows tie on sent_at and only the id orders them; some have none.
        sent = None if n % 15 == 0 else T0 + timedelta(minutes=rnd.randrange(12))
        original.add(str(await seed.message("acme", "gong", f"c{n}", {"call_id": str(n)}, sent_at=sent)))
    await seed.message("globex", "gong", "x", {}, sent_at=T0)

    writer = await asyncpg.connect(database_url)
    inserted = 0
    stop = asyncio.Event()

    async def insert_concurrently() -> None:
        nonlocal inserted
        while not stop.is_set():
            sent = None if inserted % 5 == 0 else T0 + timedelta(minutes=rnd.randrange(-5, 17))
            await writer.execute(
                "insert into messages (workspace_id, source, external_id, content_hash, sent_at)"
                " values ('acme', 'gong', $1, 'h', $2)",
                f"new{inserted}",
                sent,
            )
            inserted += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(insert_concurrently())
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        while True:
            params: dict[str, Any] = {"workspace_id": "acme", "limit": 7}
            if cursor:
                params["cursor"] = cursor
            r = await linker.get("/v1/messages", params=params, headers=bearer(admin_token))
            assert r.status_code == 200, r.text
            page = r.json()
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            await asyncio.sleep(0.01)  # let the writer in between pages
            if cursor is None:
                break
    finally:
        stop.set()
        await task
        await writer.close()

    ids = [i["id"] for i in seen]
    assert inserted > 10, "the writer must have run while paging"
    assert len(ids) == len(set(ids)), "no row may be served twice"
    assert original <= set(ids), "every row that existed before paging must be served"
    assert {i["workspace_id"] for i in seen} == {"acme"}
    # Served in order: undated first, then sent_at descending, ties by id descending.
    keys = [
        (i["sent_at"] is not None, -datetime.fromisoformat(i["sent_at"]).timestamp() if i["sent_at"] else 0)
        for i in seen
    ]
    assert keys == sorted(keys)
    for a, b in itertools.pairwise(seen):
        if a["sent_at"] == b["sent_at"]:
            assert uuid.UUID(a["id"]) > uuid.UUID(b["id"])


async def test_list_filters_and_bad_cursor(linker: Client, seed: Seed, admin_token: str) -> None:
    customer = await seed.customer("acme", "globex.com")
    a = await seed.message("acme", "fathom", "1", {"recording_url": SHARE}, sent_at=T0, customer_id=customer)
    b = await seed.message("acme", "gong", "2", {"call_id": "2"}, sent_at=T0 + timedelta(days=1))
    await seed.message("acme", "gong", "3", {"call_id": "3"}, sent_at=T0 + timedelta(days=2))

    async def ids(**params: Any) -> list[str]:
        r = await linker.get("/v1/messages", params={"workspace_id": "acme", **params}, headers=bearer(admin_token))
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await ids(source="fathom") == [str(a)]
    assert await ids(customer_id=str(customer)) == [str(a)]
    assert await ids(since=(T0 + timedelta(hours=1)).isoformat(), until=(T0 + timedelta(days=2)).isoformat()) == [
        str(b)
    ]
    assert await ids(customer_id="not-a-uuid") == []
    # Garbage, a naive time, a time out of range once in UTC (asyncpg's OverflowError was a 500).
    for raw in (b"garbage!", b'["2026-12-01T10:00:00", "00000000-0000-4000-8000-000000000001"]',
                b'["0001-01-01T00:00:00+01:00", "00000000-0000-4000-8000-000000000001"]'):  # fmt: skip
        cursor = raw.decode() if raw == b"garbage!" else base64.urlsafe_b64encode(raw).decode().rstrip("=")
        for scope in ({"workspace_id": "acme"}, {}):
            r = await linker.get("/v1/messages", params={**scope, "cursor": cursor}, headers=bearer(admin_token))
            assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor"), (raw, scope, r.text)
    r = await linker.get("/v1/messages", params={"workspace_id": "acme", "limit": 501}, headers=bearer(admin_token))
    assert r.status_code == 400


# What a list item carried before #18 (readers parse these): new fields are added, none changed.
SUMMARY_FIELDS = {"id", "workspace_id", "source", "external_id", "title", "sent_at", "channel_name", "author"}
SUMMARY_FIELDS |= {"customer_id", "link"}


async def test_list_by_integration_with_duration_and_scoped_to_the_tokens_workspaces(
    linker: Client, seed: Seed, admin_token: str
) -> None:
    one, two, foreign = (str(uuid.uuid4()) for _ in range(3))
    customer = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    # The normalizer keeps the length of a call as metadata.duration_seconds (Fathom: from the
    # recording's start and end; Gong: metaData.duration, sent as a float).
    a = await seed.message(
        "acme", "fathom", "1", {"recording_url": SHARE, "duration_seconds": 2520, **HEAVY},
        sent_at=T0, integration_id=one, customer_id=customer,
    )  # fmt: skip
    b = await seed.message(
        "acme", "gong", "2", {"call_id": "2", "duration_seconds": 1834.6},
        sent_at=T0 + timedelta(hours=1), integration_id=two,
    )  # fmt: skip
    c = await seed.message(
        "acme", "fathom", "3", {"recording_url": SHARE, "duration_seconds": None},
        sent_at=T0 + timedelta(hours=2), integration_id=one,
    )  # fmt: skip
    await seed.message("globex", "gong", "4", {"duration_seconds": 60}, sent_at=T0, integration_id=foreign)

    async def page(token: str, **params: Any) -> Any:
        return await linker.get("/v1/messages", params=params, headers=bearer(token))

    answer = await page(admin_token, workspace_id="acme", integration_id=one)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["id"] for i in items] == [str(c), str(a)]
    for item in items:
        assert set(item) == SUMMARY_FIELDS | {"integration_id", "duration_seconds", "customer_name"}
    assert [(i["integration_id"], i["duration_seconds"]) for i in items] == [(one, None), (one, 2520)]
    assert (items[1]["customer_id"], items[1]["customer_name"]) == (str(customer), "Quillmere Systems")
    assert items[0]["customer_name"] is None
    assert items[1]["link"]["url"] == SHARE

    every = (await page(admin_token, workspace_id="acme")).json()["items"]
    assert [(i["id"], i["integration_id"], i["duration_seconds"]) for i in every] == [
        (str(c), one, None),
        (str(b), two, 1835),
        (str(a), one, 2520),
    ]
    # With the other filters, in any spelling of the id, and page by page with the filter kept.
    both = {"workspace_id": "acme", "integration_id": one.upper(), "source": "fathom"}
    assert [i["id"] for i in (await page(admin_token, **both, customer_id=str(customer))).json()["items"]] == [str(a)]
    first = (await page(admin_token, **both, limit=1)).json()
    assert [i["id"] for i in first["items"]] == [str(c)]
    second = (await page(admin_token, **both, limit=1, cursor=first["next_cursor"])).json()
    assert ([i["id"] for i in second["items"]], second["next_cursor"]) == ([str(a)], None)
    assert (await page(admin_token, workspace_id="acme", integration_id=foreign)).json()["items"] == []

    bad = await page(admin_token, workspace_id="acme", integration_id="not-an-id")
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_integration_id")
    assert set(bad.json()) == {"error", "detail"}

    # A read token of another workspace sees nothing of acme's, filtered or not.
    globex = await seed.token("globex")
    hidden = await page(globex, workspace_id="acme", integration_id=one)
    assert (hidden.status_code, hidden.json()["error"]) == (404, "not_found")
    assert (await page(globex, workspace_id="globex", integration_id=one)).json()["items"] == []
    # A customer without a name is named by its domain (what it was recognised by).
    unnamed = await seed.customer("globex", "initech.example")
    await seed.conn.execute("update messages set customer_id = $1 where workspace_id = 'globex'", unnamed)
    own = (await page(globex, workspace_id="globex", integration_id=foreign)).json()["items"]
    assert [i["customer_name"] for i in own] == ["initech.example"]
    assert [(i["workspace_id"], i["duration_seconds"]) for i in own] == [("globex", 60)]


# The old MessageResponse, field by field: what existing clients of the features endpoint parse.
OLD_MESSAGE_RESPONSE = {
    "id": str,
    "content": str,
    "sent_at": (str, type(None)),
    "sender_name": (str, type(None)),
    "channel_name": (str, type(None)),
    "customer_name": (str, type(None)),
    "customer_email": (str, type(None)),
    "ai_insights": (dict, type(None)),
}
ADDED = {"source": str, "external_id": str, "message_metadata": dict, "link": dict}


async def test_features_endpoint_keeps_the_old_message_response(linker: Client, seed: Seed) -> None:
    token = await seed.token("acme")
    customer = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    full = await seed.message(
        "acme",
        "fathom",
        "1",
        {"recording_url": SHARE, **HEAVY},
        sent_at=T0,
        customer_id=customer,
        content="Priya: hi",
        author_name="Devon",
        channel_name="fathom",
        ai_insights={"sentiment": "positive"},
    )
    bare = await seed.message("acme", "gong", "5520183947712650031", {}, content="")
    await seed.conn.execute(
        "insert into message_participants (message_id, position, name, email, affiliation) values"
        " ($1, 0, 'Devon', 'devon@us.example', 'internal'), ($1, 1, 'Priya', 'priya@quillmere.com', 'external')",
        full,
    )
    await seed.conn.execute("insert into features (workspace_id, id, name) values ('acme', 'f1', 'SSO')")
    await seed.conn.execute(
        "insert into message_features (workspace_id, feature_id, source, external_id, message_id) values"
        " ('acme', 'f1', 'fathom', '1', $1), ('acme', 'f1', 'gong', '5520183947712650031', $2),"
        " ('acme', 'f1', 'gong', 'not-arrived-yet', null)",
        full,
        bare,
    )
    # The transcript only when asked for (issue #20: lists carry no transcripts by default).
    r = await linker.get(
        "/v1/features/f1/messages", params={"workspace_id": "acme", "include": "content"}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    items = r.json()
    assert isinstance(items, list)
    assert len(items) == 2
    for item in items:
        assert set(item) == set(OLD_MESSAGE_RESPONSE) | set(ADDED)
        for name, typ in {**OLD_MESSAGE_RESPONSE, **ADDED}.items():
            assert isinstance(item[name], typ), (name, item[name])
        assert set(item["link"]) == {"url", "kind", "origin", "reason"}
        assert not set(HEAVY) & set(item["message_metadata"])
    first, second = items
    assert first == {
        "id": str(full),
        "content": "Priya: hi",
        "sent_at": first["sent_at"],
        "sender_name": "Devon",
        "channel_name": "fathom",
        "customer_name": "Quillmere Systems",
        "customer_email": "priya@quillmere.com",
        "ai_insights": {"sentiment": "positive"},
        "source": "fathom",
        "external_id": "1",
        "message_metadata": {"recording_url": SHARE},
        "link": {"url": SHARE, "kind": "recording", "origin": "metadata.recording_url", "reason": None},
    }
    assert datetime.fromisoformat(first["sent_at"]) == T0
    assert (second["sent_at"], second["customer_name"], second["customer_email"], second["ai_insights"]) == (None,) * 4
    assert second["link"]["origin"] == "constructed"

    for params in ({"workspace_id": "acme"}, {"workspace_id": "globex"}):
        missing = await linker.get("/v1/features/nope/messages", params=params, headers=bearer(token))
        assert missing.status_code == 404
    foreign = await linker.get("/v1/features/f1/messages", params={"workspace_id": "globex"}, headers=bearer(token))
    assert foreign.json() == missing.json()


async def test_reads_run_as_the_read_only_role(linker: Client, read_only_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(read_only_url)
    try:
        assert await conn.fetchval("select count(*) from messages") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("insert into features (workspace_id, id) values ('acme', 'x')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("select * from integrations")
    finally:
        await conn.close()
    # The service's connections are read-only even where its role could write (the superuser here).
    superuser = await asyncpg.connect(read_only_dsn(database_url))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await superuser.execute("insert into features (workspace_id, id) values ('acme', 'x')")
    finally:
        await superuser.close()
