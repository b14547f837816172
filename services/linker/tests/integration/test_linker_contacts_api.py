"""Contacts and customers, read as the linker's read-only role: keyset pages, filters, bounds,
workspace scoping, and a customer with its contacts and its messages (each with its link)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _contact(
    seed: Seed,
    workspace_id: str,
    email: str,
    *,
    days: int,
    customer_id: uuid.UUID | None = None,
    messages: tuple[uuid.UUID, ...] = (),
    name: str | None = None,
    title: str | None = None,
) -> uuid.UUID:
    """A contact as the normalizer keeps it (its counts from contact_messages)."""
    seen = T0 + timedelta(days=days)
    cid = await seed.conn.fetchval(
        "insert into contacts (workspace_id, email, name, title, customer_id, first_seen, last_seen, call_count)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
        workspace_id,
        email,
        name,
        title,
        customer_id,
        seen - timedelta(days=30),
        seen,
        max(len(messages), 1),
    )
    for mid in messages:
        await seed.conn.execute("insert into contact_messages (contact_id, message_id) values ($1, $2)", cid, mid)
    return cid


async def test_contacts_pages_filters_and_scoping(linker: Client, seed: Seed, admin_token: str) -> None:
    quill = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    mid = await seed.message("acme", "fathom", "1", {"recording_url": SHARE}, sent_at=T0, customer_id=quill)
    priya = await _contact(
        seed, "acme", "priya@quillmere.com", days=3, customer_id=quill, messages=(mid,), name="Priya", title="CTO"
    )
    ola = await _contact(seed, "acme", "ola@quillmere.com", days=2, customer_id=quill)
    solo = await _contact(seed, "acme", "sam@gmail.com", days=1)
    await _contact(seed, "globex", "x@globex.com", days=9)
    token = await seed.token("acme")

    r = await linker.get("/v1/contacts", params={"workspace_id": "acme"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["id"] for c in body["items"]] == [str(priya), str(ola), str(solo)]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert first == {
        "id": str(priya),
        "workspace_id": "acme",
        "email": "priya@quillmere.com",
        "name": "Priya",
        "title": "CTO",
        "customer": {"id": str(quill), "name": "Quillmere Systems", "domain": "quillmere.com"},
        "first_seen": first["first_seen"],
        "last_seen": first["last_seen"],
        "call_count": 1,
        "updated_at": first["updated_at"],
    }
    assert datetime.fromisoformat(first["last_seen"]) == T0 + timedelta(days=3)
    assert body["items"][2]["customer"] is None

    # One at a time, in the same order, to the end.
    seen, cursor = [], None
    while True:
        params = {"workspace_id": "acme", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await linker.get("/v1/contacts", params=params, headers=bearer(token))).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(priya), str(ola), str(solo)]

    by_customer = await linker.get(
        "/v1/contacts", params={"workspace_id": "acme", "customer_id": str(quill)}, headers=bearer(token)
    )
    assert [c["id"] for c in by_customer.json()["items"]] == [str(priya), str(ola)]
    by_email = await linker.get(
        "/v1/contacts", params={"workspace_id": "acme", "email": " Priya@QuillMere.com"}, headers=bearer(token)
    )
    assert [c["id"] for c in by_email.json()["items"]] == [str(priya)]
    not_an_id = await linker.get(
        "/v1/contacts", params={"workspace_id": "acme", "customer_id": "nope"}, headers=bearer(token)
    )
    assert not_an_id.json() == {"items": [], "next_cursor": None}

    for params in ({"limit": 201}, {"limit": 0}, {"cursor": "garbage"}, {"workspace_id": "a b"}):
        bad = await linker.get("/v1/contacts", params={"workspace_id": "acme", **params}, headers=bearer(token))
        assert bad.status_code == 400, params
    assert (
        await linker.get("/v1/contacts", params={"workspace_id": "acme", "limit": 200}, headers=bearer(token))
    ).status_code == 200
    foreign = await linker.get("/v1/contacts", params={"workspace_id": "globex"}, headers=bearer(token))
    assert foreign.status_code == 404
    assert (await linker.get("/v1/contacts", params={"workspace_id": "acme"})).status_code == 401
    everywhere = await linker.get("/v1/contacts", params={"workspace_id": "globex"}, headers=bearer(admin_token))
    assert [c["email"] for c in everywhere.json()["items"]] == ["x@globex.com"]


async def test_customers_by_domain_with_counts(linker: Client, seed: Seed) -> None:
    quill = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    await seed.customer("acme", "brightpath.io", "Brightpath 100% Labs")
    await seed.customer("acme", "zeta.dev", None)
    await seed.customer("globex", "aaa.com", "Not yours")
    for i in range(3):
        await seed.message("acme", "gong", str(i), sent_at=T0 + timedelta(hours=i), customer_id=quill)
    await _contact(seed, "acme", "priya@quillmere.com", days=1, customer_id=quill)
    token = await seed.token("acme")

    r = await linker.get("/v1/customers", params={"workspace_id": "acme"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [c["domain"] for c in items] == ["brightpath.io", "quillmere.com", "zeta.dev"]
    q = items[1]
    assert (q["id"], q["name"], q["message_count"], q["contact_count"]) == (str(quill), "Quillmere Systems", 3, 1)
    assert datetime.fromisoformat(q["last_message_at"]) == T0 + timedelta(hours=2)
    assert (items[0]["message_count"], items[0]["last_message_at"]) == (0, None)

    pages, cursor = [], None
    while True:
        params = {"workspace_id": "acme", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await linker.get("/v1/customers", params=params, headers=bearer(token))).json()
        pages.append([c["domain"] for c in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["brightpath.io", "quillmere.com"], ["zeta.dev"]]

    async def domains(**params: Any) -> list[str]:
        answer = await linker.get("/v1/customers", params={"workspace_id": "acme", **params}, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        return [c["domain"] for c in answer.json()["items"]]

    assert await domains(domain="QuillMere.com") == ["quillmere.com"]
    assert await domains(q="quill") == ["quillmere.com"]
    assert await domains(q="100%") == ["brightpath.io"]  # % is a character, not a wildcard
    assert await domains(q="%") == ["brightpath.io"]
    assert await domains(q=".dev") == ["zeta.dev"]
    for params in ({"limit": 201}, {"cursor": "garbage"}):
        bad = await linker.get("/v1/customers", params={"workspace_id": "acme", **params}, headers=bearer(token))
        assert bad.status_code == 400, params
    foreign = await linker.get("/v1/customers", params={"workspace_id": "globex"}, headers=bearer(token))
    assert foreign.status_code == 404


async def test_one_customer_with_its_contacts_and_messages(linker: Client, seed: Seed, admin_token: str) -> None:
    quill = await seed.customer("acme", "quillmere.com", "Quillmere Systems")
    await seed.conn.execute(
        "update customers set industry = 'Software', website = 'https://quillmere.com', external_id = '881',"
        ' attributes = \'{"mrr": 1200, "deals": [{"name": "Pilot"}]}\'::jsonb where id = $1',
        quill,
    )
    other = await seed.customer("acme", "elsewhere.com", "Elsewhere")
    mids = [
        await seed.message(
            "acme",
            "fathom",
            str(100 + i),
            {"recording_url": f"{SHARE}{i}"},
            sent_at=T0 + timedelta(days=i),
            customer_id=quill,
            title=f"Call {i}",
        )
        for i in range(3)
    ]
    await seed.message("acme", "fathom", "999", {"recording_url": SHARE}, sent_at=T0, customer_id=other)
    gong = await seed.message(
        "acme", "gong", "5520183947712650031", {}, sent_at=T0 - timedelta(days=1), customer_id=quill
    )
    await seed.gong_host("acme", "us-48213.app.gong.io")
    contacts = [
        await _contact(seed, "acme", f"p{i}@quillmere.com", days=i, customer_id=quill, messages=(mids[i],))
        for i in range(3)
    ]
    await _contact(seed, "acme", "x@elsewhere.com", days=5, customer_id=other)
    token = await seed.token("acme")

    r = await linker.get(
        f"/v1/customers/{quill}", params={"contacts_limit": 2, "messages_limit": 3}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["domain"], body["name"], body["industry"], body["external_id"]) == (
        str(quill),
        "quillmere.com",
        "Quillmere Systems",
        "Software",
        "881",
    )
    assert body["attributes"] == {"mrr": 1200, "deals": [{"name": "Pilot"}]}
    assert (body["message_count"], body["contact_count"]) == (4, 3)
    assert [c["id"] for c in body["contacts"]] == [str(contacts[2]), str(contacts[1])]
    assert [m["id"] for m in body["messages"]] == [str(mids[2]), str(mids[1]), str(mids[0])]
    assert body["messages"][0]["link"] == {
        "url": f"{SHARE}2",
        "kind": "recording",
        "origin": "metadata.recording_url",
        "reason": None,
    }
    assert body["messages"][0]["title"] == "Call 2"

    # The cursors continue on the list endpoints, filtered by the customer.
    rest = await linker.get(
        "/v1/contacts",
        params={"workspace_id": "acme", "customer_id": str(quill), "cursor": body["contacts_next_cursor"]},
        headers=bearer(token),
    )
    assert [c["id"] for c in rest.json()["items"]] == [str(contacts[0])]
    more = await linker.get(
        "/v1/messages",
        params={"workspace_id": "acme", "customer_id": str(quill), "cursor": body["messages_next_cursor"]},
        headers=bearer(token),
    )
    [last] = more.json()["items"]
    assert last["id"] == str(gong)
    assert last["link"]["url"] == "https://us-48213.app.gong.io/call?id=5520183947712650031"

    whole = (await linker.get(f"/v1/customers/{quill}", headers=bearer(token))).json()
    assert (len(whole["contacts"]), len(whole["messages"])) == (3, 4)
    assert (whole["contacts_next_cursor"], whole["messages_next_cursor"]) == (None, None)

    stranger = await seed.token("globex")
    foreign = await linker.get(f"/v1/customers/{quill}", headers=bearer(stranger))
    unknown = await linker.get(f"/v1/customers/{uuid.uuid4()}", headers=bearer(stranger))
    assert (foreign.status_code, unknown.status_code) == (404, 404)
    assert foreign.json() == unknown.json()
    assert (await linker.get("/v1/customers/not-a-uuid", headers=bearer(admin_token))).status_code == 404
    too_many = await linker.get(f"/v1/customers/{quill}", params={"messages_limit": 201}, headers=bearer(token))
    assert too_many.status_code == 400
    tagged = await linker.get(f"/v1/customers/{quill}", headers={**bearer(token), "If-None-Match": r.headers["etag"]})
    assert tagged.status_code == 200  # another answer (other limits), another tag
    same = await linker.get(
        f"/v1/customers/{quill}",
        params={"contacts_limit": 2, "messages_limit": 3},
        headers={**bearer(token), "If-None-Match": r.headers["etag"]},
    )
    assert same.status_code == 304
