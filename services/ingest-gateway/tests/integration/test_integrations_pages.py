"""GET /v1/integrations: every integration without ``limit``, keyset pages with it, filters, and a
manage token's pages kept to its workspaces; on the real database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
from gateway_harness import ADMIN, Gateway

from callstream.runtime import encode_keyset_cursor


async def _insert(gateway: Gateway, rows: list[tuple[str, str, str, timedelta]]) -> None:
    """(workspace_id, provider, status, seconds after 2026-01-01 as created_at) rows, straight in SQL: a
    thousand integrations through the API would take the whole test budget."""
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.executemany(
            """insert into integrations (id, workspace_id, provider, status, auth_kind, created_at)
               values (gen_random_uuid(), $1, $2, $3, case when $2 = 'gong' then 'basic' else 'api_key' end,
                       '2026-01-01T00:00:00Z'::timestamptz + $4::interval)""",
            rows,
        )
    finally:
        await conn.close()


async def test_more_than_a_thousand_are_all_listed_without_limit(gateway: Gateway) -> None:
    # It answered the first 1,000 and dropped the rest without a word.
    await _insert(gateway, [("ws-many", "fathom", "active", timedelta(seconds=i)) for i in range(1001)])
    response = await gateway.client.get("/v1/integrations", headers=ADMIN)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert len(listed) == 1001
    assert len({i["id"] for i in listed}) == 1001
    assert "link" not in response.headers
    # The order callers had: oldest first.
    assert [i["created_at"] for i in listed] == sorted(i["created_at"] for i in listed)


async def _walk(gateway: Gateway, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Follow rel=next from the first page to the last; every page's size checked."""
    seen: list[dict[str, Any]] = []
    url: str | None = "/v1/integrations"
    query: dict[str, Any] | None = params
    while url is not None:
        response = await gateway.client.get(url, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        next_link = response.links.get("next")
        if next_link is not None:
            assert len(page) == params["limit"]
            url, query = next_link["url"], None
            assert url.startswith("/v1/integrations?")
        else:
            assert len(page) <= params["limit"]
            url = None
        seen += page
        assert len(seen) < 10_000, "the pages never end"
    return seen


def _newest_first(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(((i["created_at"], i["id"]) for i in items), reverse=True)


async def test_pages_walk_every_integration_once_newest_first_with_ties(gateway: Gateway) -> None:
    # 3 integrations on each of 9 instants: every page boundary of 4 falls inside a tie somewhere.
    await _insert(gateway, [("ws-a", "fathom", "active", timedelta(seconds=i // 3)) for i in range(27)])
    everything = (await gateway.client.get("/v1/integrations", headers=ADMIN)).json()
    assert len(everything) == 27
    for limit in (1, 4, 26, 27, 500):
        walked = await _walk(gateway, ADMIN, limit=limit)
        assert [(i["created_at"], i["id"]) for i in walked] == _newest_first(everything), limit
    # A page ends exactly at the last one: no Link, and no empty page after it.
    last = await gateway.client.get("/v1/integrations", params={"limit": 27}, headers=ADMIN)
    assert len(last.json()) == 27
    assert "link" not in last.headers


async def test_filters_combine_with_pages(gateway: Gateway) -> None:
    rows = []
    for i in range(40):
        workspace = ("ws-a", "ws-b")[i % 2]
        provider = ("fathom", "gong")[(i // 2) % 2]
        status = ("active", "disabled", "reauth_required", "erased")[(i // 4) % 4]
        rows.append((workspace, provider, status, timedelta(seconds=i // 5)))
    await _insert(gateway, rows)
    everything = (await gateway.client.get("/v1/integrations", headers=ADMIN)).json()
    for params in (
        {"provider": "gong"},
        {"status": "reauth_required"},
        {"workspace_id": "ws-b", "provider": "fathom"},
        {"workspace_id": "ws-a", "provider": "gong", "status": "disabled"},
    ):
        wanted = [i for i in everything if all(i[k] == v for k, v in params.items())]
        assert wanted, params
        # Unpaged: the same filters, oldest first.
        unpaged = (await gateway.client.get("/v1/integrations", params=params, headers=ADMIN)).json()
        assert [i["id"] for i in unpaged] == [i["id"] for i in everything if i in wanted]
        first = await gateway.client.get("/v1/integrations", params={**params, "limit": 2}, headers=ADMIN)
        if len(wanted) > 2:  # the next page keeps the filters
            next_query = parse_qs(urlsplit(first.links["next"]["url"]).query)
            assert {k: v for k, v in next_query.items() if k != "cursor"} == {
                **{k: [v] for k, v in params.items()},
                "limit": ["2"],
            }
        walked = await _walk(gateway, ADMIN, limit=2, **params)
        assert [(i["created_at"], i["id"]) for i in walked] == _newest_first(wanted), params


async def test_a_manage_tokens_pages_show_only_its_workspaces(gateway: Gateway) -> None:
    await _insert(gateway, [(f"ws-{i % 3}", "fathom", "active", timedelta(seconds=i // 4)) for i in range(30)])
    token = await gateway.client.post(
        "/v1/tokens", json={"workspace_ids": ["ws-0", "ws-2"], "name": "product", "scopes": ["manage"]}, headers=ADMIN
    )
    assert token.status_code == 201, token.text
    manager = {"Authorization": f"Bearer {token.json()['token']}"}
    everything = (await gateway.client.get("/v1/integrations", headers=ADMIN)).json()
    own = [i for i in everything if i["workspace_id"] in ("ws-0", "ws-2")]
    walked = await _walk(gateway, manager, limit=3)
    assert [(i["created_at"], i["id"]) for i in walked] == _newest_first(own)
    # Asking for another workspace by name gives nothing of it, paged or not.
    assert await _walk(gateway, manager, limit=3, workspace_id="ws-1") == []
    other = await gateway.client.get("/v1/integrations", params={"workspace_id": "ws-1"}, headers=manager)
    assert other.json() == []
    # A cursor made from another workspace's row moves the position, never the workspaces.
    # The newest of ws-1, so that rows of ws-0 and ws-2 are older than it (the oldest made it flaky).
    foreign = max((i for i in everything if i["workspace_id"] == "ws-1"), key=lambda i: (i["created_at"], i["id"]))
    cursor = encode_keyset_cursor(datetime.fromisoformat(foreign["created_at"]), foreign["id"])
    page = await gateway.client.get("/v1/integrations", params={"limit": 500, "cursor": cursor}, headers=manager)
    assert page.status_code == 200
    assert page.json()
    assert {i["workspace_id"] for i in page.json()} <= {"ws-0", "ws-2"}


_BAD = [
    ({"limit": 5, "cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"limit": 5, "cursor": "W10"}, "invalid_cursor"),  # base64 of "[]"
    ({"limit": 5, "cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiMSJd"}, "invalid_cursor"),  # no zone, no uuid
    ({"limit": 5, "cursor": "%%%"}, "invalid_cursor"),
    # Well formed, but out of PostgreSQL's reach once in UTC (year 0, year 10000): not a 500.
    (
        {
            "limit": 5,
            "cursor": "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzAxOjAwIiwgIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMSJd",
        },
        "invalid_cursor",
    ),
    (
        {
            "limit": 5,
            "cursor": "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTAxOjAwIiwgIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMSJd",
        },
        "invalid_cursor",
    ),
    ({"limit": 5, "cursor": "x" * 513}, "bad_request"),
    ({"cursor": "W10"}, "invalid_cursor"),  # a cursor without limit
    ({"limit": 0}, "bad_request"),
    ({"limit": 501}, "bad_request"),
    ({"limit": "ten"}, "bad_request"),
    ({"provider": "zoom"}, "bad_request"),
    ({"status": "deleted"}, "bad_request"),
    ({"limit": 5, "status": "ACTIVE"}, "bad_request"),
]


async def test_bad_parameters_are_a_400(gateway: Gateway) -> None:
    # One gateway for every case (a gateway per case would cost a second each).
    for params, code in _BAD:
        response = await gateway.client.get("/v1/integrations", params=params, headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"] == code, params
