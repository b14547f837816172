"""``GET /v1/messages`` without ``workspace_id``: every workspace the token may read, in one keyset
order (issue #18: the console's operator page asked once per workspace and had no "Older" page)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
Seed = Any  # the conftest's Seed (tests import nothing from conftest)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTEGRATION = {ws: str(uuid.uuid4()) for ws in ("ws-a", "ws-b", "ws-c")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


Row = tuple[datetime | None, str, str]  # sent_at, id, source


async def _seed(seed: Seed) -> dict[str, list[Row]]:
    """Messages in three workspaces with interleaved times, ties on ``sent_at`` (only the id orders
    them), one without a time, and a tombstone each: the visible ones by workspace."""
    visible: dict[str, list[Row]] = {}
    for w, ws in enumerate(("ws-a", "ws-b", "ws-c")):
        customer = await seed.customer(ws, f"{ws}.example")
        rows: list[Row] = []
        for n in range(7):
            sent = None if (w, n) == (1, 3) else T0 + timedelta(minutes=3 * n + w if n % 3 else 3 * n)
            source = "gong" if n % 2 else "fathom"
            mid = await seed.message(
                ws,
                source,
                f"{ws}-{n}",
                {"call_id": f"{ws}-{n}"},
                sent_at=sent,
                customer_id=customer,
                integration_id=INTEGRATION[ws],
                title=f"{ws} {n}",
            )
            rows.append((sent, str(mid), source))
        await seed.message(
            ws, "gong", f"{ws}-gone", {}, sent_at=T0 + timedelta(days=1), deleted_at=T0, deleted_reason="retention"
        )
        visible[ws] = rows
    return visible


def _newest_first(rows: list[Row]) -> list[str]:
    """The listing's order: sent_at descending with none first, then the id descending."""
    none_first = sorted((r for r in rows if r[0] is None), key=lambda r: uuid.UUID(r[1]), reverse=True)
    timed = sorted((r for r in rows if r[0] is not None), key=lambda r: (r[0], uuid.UUID(r[1])), reverse=True)
    return [r[1] for r in none_first + timed]


async def _walk(linker: Client, token: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page from the first, following next_cursor."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = await linker.get("/v1/messages", params=query, headers=bearer(token))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


async def test_admin_lists_every_workspace_newest_first_each_once(linker: Client, seed: Seed, admin_token: str) -> None:
    visible = await _seed(seed)
    everything = [row for rows in visible.values() for row in rows]
    seen = await _walk(linker, admin_token, 4)
    assert [m["id"] for m in seen] == _newest_first(everything)  # each once, in order, no tombstone
    assert {m["workspace_id"] for m in seen} == {"ws-a", "ws-b", "ws-c"}
    # The filters apply across workspaces too.
    since = T0 + timedelta(minutes=3)
    gong = await _walk(linker, admin_token, 3, source="gong", since=since.isoformat())
    expected = [r for r in everything if r[2] == "gong" and r[0] is not None and r[0] >= since]
    assert [m["id"] for m in gong] == _newest_first(expected)
    assert {m["workspace_id"] for m in gong} == {"ws-a", "ws-b", "ws-c"}
    one = await _walk(linker, admin_token, 2, integration_id=INTEGRATION["ws-b"])
    assert [m["id"] for m in one] == _newest_first(visible["ws-b"])


# Two workspaces are listed one at a time and merged; past PER_WORKSPACE_MAX (100) workspaces, by
# ``workspace_id = any(...)``: both ways must show the same.
@pytest.mark.parametrize("idle_workspaces", [0, 120], ids=["per-workspace", "any"])
async def test_a_token_sees_only_its_workspaces_on_every_page(
    linker: Client, seed: Seed, admin_token: str, idle_workspaces: int
) -> None:
    visible = await _seed(seed)
    token = await seed.token("ws-a", "ws-b", *(f"idle-{n}" for n in range(idle_workspaces)))
    seen = await _walk(linker, token, 3)
    assert [m["id"] for m in seen] == _newest_first(visible["ws-a"] + visible["ws-b"])
    assert {m["workspace_id"] for m in seen} == {"ws-a", "ws-b"}

    gong = await _walk(linker, token, 2, source="gong")
    assert {m["workspace_id"] for m in gong} == {"ws-a", "ws-b"}
    assert len(gong) == 6

    # Another workspace's integration or customer: an empty list, on the first page as on any.
    assert await _walk(linker, token, 2, integration_id=INTEGRATION["ws-c"]) == []
    customer_c = await seed.conn.fetchval("select id from customers where workspace_id = 'ws-c'")
    assert await _walk(linker, token, 2, customer_id=str(customer_c)) == []
    # Its own: every message of it, each once.
    own = await _walk(linker, token, 2, integration_id=INTEGRATION["ws-b"])
    assert [m["id"] for m in own] == _newest_first(visible["ws-b"])

    # A cursor from the admin's walk is only a position: the token goes on in its own workspaces.
    everything = _newest_first([r for rows in visible.values() for r in rows])
    for limit in (1, 5):
        admin_page = (await linker.get("/v1/messages", params={"limit": limit}, headers=bearer(admin_token))).json()
        after = await _walk(linker, token, 50, cursor=admin_page["next_cursor"])
        mine = {m["id"] for m in seen}
        assert [m["id"] for m in after] == [mid for mid in everything[limit:] if mid in mine]


async def test_a_token_of_no_workspace_lists_nothing(linker: Client, seed: Seed) -> None:
    await _seed(seed)
    assert await _walk(linker, await seed.token(), 5) == []


async def test_answers_and_etags_do_not_leak_between_tokens(linker: Client, seed: Seed, admin_token: str) -> None:
    visible = await _seed(seed)
    ab = await seed.token("ws-a", "ws-b")
    c = await seed.token("ws-c")
    first = await linker.get("/v1/messages", params={"limit": 50}, headers=bearer(ab))
    assert first.status_code == 200
    assert "authorization" in first.headers["vary"].lower()
    etag = first.headers["etag"]

    # Token C presenting A+B's tag gets its own answer, not a 304 for what A+B saw.
    other = await linker.get("/v1/messages", params={"limit": 50}, headers={**bearer(c), "If-None-Match": etag})
    assert other.status_code == 200
    assert [m["id"] for m in other.json()["items"]] == _newest_first(visible["ws-c"])
    assert other.headers["etag"] != etag
    # The admin's every-workspace answer is not A+B's either.
    admin = await linker.get(
        "/v1/messages", params={"limit": 50}, headers={**bearer(admin_token), "If-None-Match": etag}
    )
    assert admin.status_code == 200
    assert len(admin.json()["items"]) == 21
    # And A+B's answers stay theirs, asked in between the others': the same tag, a 304 on a match.
    again = await linker.get("/v1/messages", params={"limit": 50}, headers={**bearer(ab), "If-None-Match": etag})
    assert again.status_code == 304
    # A new message in ws-c changes C's answer and not A+B's.
    await seed.message("ws-c", "gong", "late", {}, sent_at=T0 + timedelta(days=2))
    assert (
        await linker.get("/v1/messages", params={"limit": 50}, headers={**bearer(ab), "If-None-Match": etag})
    ).status_code == 304
    c_after = await linker.get(
        "/v1/messages", params={"limit": 50}, headers={**bearer(c), "If-None-Match": other.headers["etag"]}
    )
    assert c_after.status_code == 200
    assert c_after.json()["items"][0]["external_id"] == "late"


async def test_workspace_id_given_lists_that_workspace_as_before(linker: Client, seed: Seed, admin_token: str) -> None:
    visible = await _seed(seed)
    token = await seed.token("ws-a", "ws-b")
    only_b = await _walk(linker, token, 3, workspace_id="ws-b")
    assert [m["id"] for m in only_b] == _newest_first(visible["ws-b"])
    foreign = await linker.get("/v1/messages", params={"workspace_id": "ws-c"}, headers=bearer(token))
    assert (foreign.status_code, foreign.json()["error"]) == (404, "not_found")
    admin_c = await _walk(linker, admin_token, 4, workspace_id="ws-c")
    assert [m["id"] for m in admin_c] == _newest_first(visible["ws-c"])
    bad = await linker.get("/v1/messages", params={"workspace_id": "no spaces"}, headers=bearer(admin_token))
    assert bad.status_code == 400
