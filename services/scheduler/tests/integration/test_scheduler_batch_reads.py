"""The scheduler's batch reads for the console's overview (issue #18, bench/console): every
integration's sync state in one answer (``GET /v1/sync-state`` naming no workspace) and many
integrations' health in one answer (``GET /v1/health?integration_id=...``), each the admin token's
alone, each answering what the per-workspace and per-integration routes answer."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
from scheduler_kit import ADMIN_TOKEN, FakeClock, add_integration

from callstream.contracts import hash_api_token
from callstream.scheduler import Policy, SyncStore

TOKEN = ADMIN_TOKEN
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


async def _manager(pool: asyncpg.Pool, workspaces: list[str]) -> dict[str, str]:
    token = "cst_" + secrets.token_urlsafe(32)
    await pool.execute(
        "insert into api_tokens (id, name, token_hash, workspace_ids, scopes) values ($1, 't', $2, $3, $4)",
        uuid.uuid4(),
        hash_api_token(token),
        workspaces,
        ["read", "manage"],
    )
    return {"Authorization": f"Bearer {token}"}


async def test_every_integrations_sync_state_in_one_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    a = await add_integration(pool, "gong", workspace_id="ws-a", parked_until=clock.now() + DAY)
    # Each with a state already (parked): the due loop running alongside makes none between two reads.
    b = await add_integration(pool, "fathom", workspace_id="ws-b", status="reauth_required", parked_until=clock.now())
    await add_integration(pool, "fathom", workspace_id="ws-b", status="erased")

    everything = await client.get("/v1/sync-state", headers=ADMIN)
    assert everything.status_code == 200, everything.text
    by_id = {s["integration_id"]: s for s in everything.json()}
    assert set(by_id) == {str(a), str(b)}  # the erased one is left out, as per workspace
    per_workspace = [
        s
        for w in ("ws-a", "ws-b")
        for s in (await client.get(f"/v1/sync-state?workspace_id={w}", headers=ADMIN)).json()
    ]
    assert {s["integration_id"]: s for s in per_workspace} == by_id

    # A workspace's manage token names its workspace; asking for everything is the operator's.
    manager = await _manager(pool, ["ws-a"])
    refused = await client.get("/v1/sync-state", headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    assert (await client.get("/v1/sync-state", headers={})).status_code == 401


async def test_many_integrations_health_in_one_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    fathom = await add_integration(pool, "fathom", workspace_id="ws-a", parked_until=clock.now() + DAY)
    gong = await add_integration(pool, "gong", workspace_id="ws-b", status="reauth_required", parked_until=clock.now())
    erased = await add_integration(pool, "gong", workspace_id="ws-b", status="erased")
    unknown = uuid.uuid4()

    asked = [gong, unknown, fathom, erased, gong]
    answer = await client.get("/v1/health", params=[("integration_id", str(i)) for i in asked], headers=ADMIN)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    # In the order asked, each once; the unknown and the erased left out.
    assert [h["integration_id"] for h in items] == [str(gong), str(fathom)]
    for item in items:
        one = await client.get(f"/v1/integrations/{item['integration_id']}/health", headers=ADMIN)
        assert one.json() == item
    assert not items[0]["healthy"]
    assert {c["name"] for c in items[0]["checks"] if not c["ok"]} >= {"connected", "credentials_valid"}

    none = await client.get("/v1/health", headers=ADMIN)
    assert none.status_code == 400
    too_many = await client.get("/v1/health", params=[("integration_id", str(uuid.uuid4()))] * 501, headers=ADMIN)
    assert too_many.status_code == 400
    bad = await client.get("/v1/health", params={"integration_id": "not-a-uuid"}, headers=ADMIN)
    assert bad.status_code == 400

    manager = await _manager(pool, ["ws-a"])
    refused = await client.get("/v1/health", params={"integration_id": str(fathom)}, headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    # Naming its own workspace beside the ids does not open it: this route reads no workspace, so
    # the one named was never the one served (the guard passed it, and ws-b's health leaked).
    for params in (
        [("integration_id", str(gong)), ("workspace_id", "ws-a")],
        [("integration_id", str(fathom)), ("workspace_id", "ws-a")],
    ):
        leaked = await client.get("/v1/health", params=params, headers=manager)
        assert (leaked.status_code, leaked.json()["error"]) == (403, "admin_only"), leaked.text


async def _set_state(pool: asyncpg.Pool, integration_id: uuid.UUID, status: str, failures: int = 0) -> None:
    await pool.execute(
        "update sync_state set status = $2, consecutive_failures = $3 where integration_id = $1",
        integration_id,
        status,
        failures,
    )


async def _running(
    pool: asyncpg.Pool, integration_id: uuid.UUID, clock: FakeClock, moved_minutes_ago: int
) -> uuid.UUID:
    """A run going for three hours that last moved ``moved_minutes_ago``."""
    run_id = uuid.uuid4()
    await pool.execute(
        """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at,
                                  started_at, last_progress_at)
           select $1, id, workspace_id, provider, 'backfill', 'manual', 'running', $3, $3, $4
           from integrations where id = $2""",
        run_id,
        integration_id,
        clock.now() - timedelta(hours=3),
        clock.now() - timedelta(minutes=moved_minutes_ago),
    )
    return run_id


async def test_a_page_of_integrations_sync_states_by_id(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    """The console's list asks for the states of the page it shows, not every state."""
    later = clock.now() + DAY
    a = await add_integration(pool, "gong", workspace_id="ws-a", parked_until=later)
    b = await add_integration(pool, "fathom", workspace_id="ws-b", parked_until=later)
    c = await add_integration(pool, "fathom", workspace_id="ws-b", parked_until=later)
    erased = await add_integration(pool, "gong", workspace_id="ws-b", status="erased")

    asked = [("integration_id", str(i)) for i in (c, a, erased, uuid.uuid4())]
    answer = await client.get("/v1/sync-state", params=asked, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert {s["integration_id"] for s in answer.json()} == {str(a), str(c)}
    # With a workspace too, both apply: what a manage token of ws-a may ask names its own only.
    manager = await _manager(pool, ["ws-a"])
    scoped = await client.get("/v1/sync-state", params=[*asked, ("workspace_id", "ws-a")], headers=manager)
    assert scoped.status_code == 200, scoped.text
    assert [s["integration_id"] for s in scoped.json()] == [str(a)]
    refused = await client.get("/v1/sync-state", params=[("integration_id", str(b))], headers=manager)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    too_many = await client.get("/v1/sync-state", params=[("integration_id", str(a))] * 501, headers=ADMIN)
    assert too_many.status_code == 400
    bad = await client.get("/v1/sync-state", params={"integration_id": "nope"}, headers=ADMIN)
    assert bad.status_code == 400


async def test_the_summary_counts_every_integration_and_lists_those_that_need_a_person(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    later = clock.now() + DAY
    healthy = [await add_integration(pool, "fathom", workspace_id=f"ws-{k}", parked_until=later) for k in range(3)]
    for key in healthy:
        await _set_state(pool, key, "success")
    failing = await add_integration(pool, "gong", workspace_id="ws-f", parked_until=later)
    await _set_state(pool, failing, "error", failures=3)
    failing_once = await add_integration(pool, "gong", workspace_id="ws-f", parked_until=later)
    await _set_state(pool, failing_once, "error", failures=1)
    syncing = await add_integration(pool, "fathom", workspace_id="ws-s", parked_until=later)
    await _set_state(pool, syncing, "syncing")
    await _running(pool, syncing, clock, moved_minutes_ago=5)  # moving: no one's concern
    stuck = await add_integration(pool, "gong", workspace_id="ws-s", parked_until=later)
    await _set_state(pool, stuck, "syncing")
    stuck_run = await _running(pool, stuck, clock, moved_minutes_ago=170)  # past the 2 h bound
    refused = await add_integration(pool, "fathom", workspace_id="ws-r", status="reauth_required", parked_until=later)
    await _set_state(pool, refused, "success")
    disabled = await add_integration(pool, "gong", workspace_id="ws-d", status="disabled", parked_until=later)
    await _set_state(pool, disabled, "error", failures=2)  # disabled: nobody needs to look at its runs
    await add_integration(pool, "gong", workspace_id="ws-e", status="erased")
    await add_integration(pool, "fathom", workspace_id="ws-n", parked_until=later)  # never synced

    answer = await client.get("/v1/sync-summary", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    counts = {(c["provider"], c["integration_status"], c["status"]): c["count"] for c in body["counts"]}
    assert counts == {
        ("fathom", "active", "success"): 3,
        ("fathom", "active", "syncing"): 1,
        ("gong", "active", "syncing"): 1,
        ("fathom", "active", "pending"): 1,
        ("fathom", "reauth_required", "reauth_required"): 1,
        ("gong", "active", "error"): 2,
        ("gong", "disabled", "error"): 1,
    }
    listed = [a["state"]["integration_id"] for a in body["attention"]]
    # Reconnect and stuck first (few, and never hidden behind a page of failing ones), then the most
    # failures first.
    assert listed == [str(refused), str(stuck), str(failing), str(failing_once)]
    assert body["attention_total"] == 4
    # Each listed with the state and the health their own routes answer (the console's overview needs
    # both, in one request).
    for item in body["attention"]:
        key = item["state"]["integration_id"]
        assert item["state"] == (await client.get(f"/v1/integrations/{key}/sync-state", headers=ADMIN)).json()
        assert item["health"] == (await client.get(f"/v1/integrations/{key}/health", headers=ADMIN)).json()
    health = {a["state"]["integration_id"]: a["health"] for a in body["attention"]}
    assert not health[str(refused)]["healthy"]
    ready = next(c for c in health[str(stuck)]["checks"] if c["name"] == "sync_ready")
    assert (ready["ok"], str(stuck_run) in ready["reason"]) == (False, True)

    limited = (await client.get("/v1/sync-summary", params={"attention_limit": 1}, headers=ADMIN)).json()
    assert [a["state"]["integration_id"] for a in limited["attention"]] == [str(refused)]
    assert limited["attention_total"] == 4
    counted = (await client.get("/v1/sync-summary", params={"attention_limit": 0}, headers=ADMIN)).json()
    assert (counted["attention"], counted["attention_total"]) == ([], 4)
    assert (await client.get("/v1/sync-summary", params={"attention_limit": 501}, headers=ADMIN)).status_code == 400

    manager = await _manager(pool, ["ws-f"])
    denied = await client.get("/v1/sync-summary", headers=manager)
    assert (denied.status_code, denied.json()["error"]) == (403, "admin_only")
    leaked = await client.get("/v1/sync-summary", params={"workspace_id": "ws-f"}, headers=manager)
    assert (leaked.status_code, leaked.json()["error"]) == (403, "admin_only")


def _next(answer: httpx.Response) -> str | None:
    """The RFC 8288 ``rel="next"`` target of a response, if it has one."""
    link = answer.headers.get("link")
    if link is None:
        return None
    target, rel = link.split(";", 1)
    assert rel.strip() == 'rel="next"', link
    return target.strip().removeprefix("<").removesuffix(">")


async def _walk(client: httpx.AsyncClient, params: list[tuple[str, str]], headers: dict[str, str]) -> list[list[str]]:
    """Every page from the first to the one without a Link: the ids of each."""
    pages: list[list[str]] = []
    answer = await client.get("/v1/sync-state", params=params, headers=headers)
    while True:
        assert answer.status_code == 200, answer.text
        pages.append([s["integration_id"] for s in answer.json()])
        link = _next(answer)
        if link is None:
            return pages
        assert len(pages) < 20, "the pages never end"
        answer = await client.get(link, headers=headers)


async def _created(pool: asyncpg.Pool, integration_id: uuid.UUID, at: datetime) -> None:
    await pool.execute("update integrations set created_at = $2 where id = $1", integration_id, at)


async def test_sync_states_page_newest_first_by_keyset(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    """The console's list by status pages the states (issue #18): newest integration first, each once,
    ties of created_at in id order, the next page in a Link; without limit the answer of before."""
    later = clock.now() + DAY
    base = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
    made: list[tuple[datetime, uuid.UUID]] = []
    for k, hours in enumerate([0, 1, 1, 1, 2, 3, 3]):  # ties of created_at across page borders
        key = await add_integration(pool, "fathom" if k % 2 else "gong", workspace_id="ws-p", parked_until=later)
        await _created(pool, key, base + timedelta(hours=hours))
        made.append((base + timedelta(hours=hours), key))
    erased = await add_integration(pool, "gong", workspace_id="ws-p", status="erased")
    await _created(pool, erased, base + timedelta(hours=9))  # newest, and never listed
    newest_first = [str(key) for _, key in sorted(made, reverse=True)]

    for limit, sizes in ((2, [2, 2, 2, 1]), (3, [3, 3, 1]), (7, [7]), (1, [1] * 7), (500, [7])):
        pages = await _walk(client, [("limit", str(limit))], ADMIN)
        assert [len(p) for p in pages] == sizes, limit
        assert [key for page in pages for key in page] == newest_first, limit
    # The last page exactly full: no Link, no empty page after it.
    at_seven = await client.get("/v1/sync-state", params={"limit": 7}, headers=ADMIN)
    assert (len(at_seven.json()), _next(at_seven)) == (7, None)

    # Each item carries its integration's created_at, the order's key.
    first = await client.get("/v1/sync-state", params={"limit": 1}, headers=ADMIN)
    assert datetime.fromisoformat(first.json()[0]["created_at"]) == base + timedelta(hours=3)
    # The cursor is the gateway's: urlsafe base64 (no padding) of ["<created_at>", "<id>"].
    link = _next(first)
    assert link is not None
    token = parse_qs(urlsplit(link).query)["cursor"][0]
    created, key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert (datetime.fromisoformat(created), key) == (base + timedelta(hours=3), newest_first[0])

    # Without limit: every match, oldest first, no Link, as before.
    unpaged = await client.get("/v1/sync-state", headers=ADMIN)
    assert [s["integration_id"] for s in unpaged.json()] == newest_first[::-1]
    assert "link" not in unpaged.headers


async def test_sync_states_filtered_by_status_provider_and_the_gateways_status(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    later = clock.now() + DAY
    base = datetime(2026, 1, 5, tzinfo=UTC)
    keys: dict[str, uuid.UUID] = {}
    for k, (name, provider, status, state) in enumerate(
        [
            ("ok", "fathom", "active", "success"),
            ("ok_gong", "gong", "active", "success"),
            ("failing", "fathom", "active", "error"),
            ("syncing", "gong", "active", "syncing"),
            ("flagged", "fathom", "reauth_required", "success"),  # the gateway's flag wins
            ("off", "gong", "disabled", None),  # never synced: pending, with or without a state row
            ("gone", "fathom", "erased", None),
        ]
    ):
        parked = later if state is not None else None
        key = keys[name] = await add_integration(
            pool, provider, workspace_id="ws-f", status=status, parked_until=parked
        )
        if state is not None:
            await _set_state(pool, key, state)
        await _created(pool, key, base + timedelta(minutes=k))

    async def listed(params: list[tuple[str, str]]) -> list[str]:
        answer = await client.get("/v1/sync-state", params=params, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        names = {str(v): k for k, v in keys.items()}
        return [names[s["integration_id"]] for s in answer.json()]

    assert await listed([("status", "success")]) == ["ok", "ok_gong"]
    assert await listed([("status", "reauth_required")]) == ["flagged"]
    assert await listed([("status", "pending")]) == ["off"]
    assert await listed([("status", "success"), ("status", "error")]) == ["ok", "ok_gong", "failing"]
    assert await listed([("integration_status", "reauth_required")]) == ["flagged"]
    assert await listed([("integration_status", "active"), ("integration_status", "disabled")]) == [
        "ok",
        "ok_gong",
        "failing",
        "syncing",
        "off",
    ]
    assert await listed([("provider", "gong")]) == ["ok_gong", "syncing", "off"]
    assert await listed([("status", "success"), ("provider", "fathom"), ("integration_status", "active")]) == ["ok"]
    assert await listed([("status", "success"), ("workspace_id", "ws-other")]) == []
    assert await listed([("status", "success"), ("integration_id", str(keys["ok_gong"]))]) == ["ok_gong"]
    reauth = await client.get("/v1/sync-state", params={"status": "reauth_required"}, headers=ADMIN)
    assert (reauth.json()[0]["status"], reauth.json()[0]["integration_status"]) == (
        "reauth_required",
        "reauth_required",
    )

    # Pages of a filtered list keep every filter, repeated ones each time, in the Link.
    asked = [
        ("workspace_id", "ws-f"),
        ("status", "success"),
        ("status", "error"),
        ("status", "reauth_required"),
        ("integration_status", "active"),
        ("integration_status", "reauth_required"),
        ("provider", "fathom"),
        ("limit", "1"),
    ]
    first = await client.get("/v1/sync-state", params=asked, headers=ADMIN)
    link = _next(first)
    assert link is not None
    assert link.startswith("/v1/sync-state?")
    kept = parse_qs(urlsplit(link).query)
    assert kept["status"] == ["success", "error", "reauth_required"]
    assert kept["integration_status"] == ["active", "reauth_required"]
    assert (kept["workspace_id"], kept["provider"], kept["limit"]) == (["ws-f"], ["fathom"], ["1"])
    pages = await _walk(client, asked, ADMIN)
    names = {str(v): k for k, v in keys.items()}
    assert [names[key] for page in pages for key in page] == ["flagged", "failing", "ok"]
    ids = [("integration_id", str(keys[n])) for n in ("ok", "failing", "ok_gong")]
    with_ids = await client.get("/v1/sync-state", params=[*ids, ("limit", "1")], headers=ADMIN)
    assert parse_qs(urlsplit(_next(with_ids) or "").query)["integration_id"] == [str(i) for _, i in ids]
    assert [names[k] for p in await _walk(client, [*ids, ("limit", "1")], ADMIN) for k in p] == [
        "failing",
        "ok_gong",
        "ok",
    ]


async def test_a_state_never_made_reads_pending_to_the_status_filter(pool: asyncpg.Pool) -> None:
    """Without the due loop (no app here), an integration with no sync_state row at all."""
    fresh = await add_integration(pool, "fathom", workspace_id="ws-n")
    store = SyncStore(lambda: pool, Policy())
    assert [r["integration_id"] for r in await store.states(statuses=["pending"])] == [fresh]
    assert await store.states(statuses=["success", "syncing"]) == []


def _cursor(*items: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(items)).encode()).decode().rstrip("=")


async def test_bad_sync_state_pages_and_filters_are_refused(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    key = str(uuid.uuid4())
    for params, error in [
        ({"limit": "2", "cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"limit": "2", "cursor": _cursor("2026-01-05T00:00:00", key)}, "invalid_cursor"),  # naive
        ({"limit": "2", "cursor": _cursor("0001-01-01T00:30:00+01:00", key)}, "invalid_cursor"),  # year 0 in UTC
        ({"limit": "2", "cursor": _cursor("2026-01-05T00:00:00Z", "nope")}, "invalid_cursor"),
        ({"limit": "2", "cursor": _cursor("2026-01-05T00:00:00Z")}, "invalid_cursor"),
        ({"cursor": _cursor("2026-01-05T00:00:00Z", key)}, "invalid_cursor"),  # a cursor without limit
        ({"limit": "2", "cursor": "A" * 513}, None),
        ({"status": "bogus"}, None),
        ({"status": "erased"}, None),
        ({"integration_status": "erased"}, None),
        ({"integration_status": "pending"}, None),
        ({"provider": "zoom"}, None),
        ({"limit": "0"}, None),
        ({"limit": "501"}, None),
        ({"limit": "many"}, None),
    ]:
        answer = await client.get("/v1/sync-state", params=params, headers=ADMIN)
        assert answer.status_code == 400, (params, answer.text)
        assert "error" in answer.json(), answer.text
        if error is not None:
            assert answer.json()["error"] == error, (params, answer.text)
    # Paging by ids: its Link would repeat every id (500 are ~26 KB, past what clients read in a header).
    ids = [("integration_id", str(uuid.uuid4())) for _ in range(51)]
    many = await client.get("/v1/sync-state", params=[*ids, ("limit", "10")], headers=ADMIN)
    assert (many.status_code, many.json()["error"]) == (400, "too_many_ids"), many.text
    assert (await client.get("/v1/sync-state", params=[*ids[:50], ("limit", "10")], headers=ADMIN)).status_code == 200
    assert (await client.get("/v1/sync-state", params=ids, headers=ADMIN)).status_code == 200  # without limit
    # A well-formed cursor past every row: an empty last page.
    fine = await client.get(
        "/v1/sync-state", params={"limit": 2, "cursor": _cursor("2026-01-05T00:00:00Z", key)}, headers=ADMIN
    )
    assert (fine.status_code, fine.json()) == (200, [])


async def test_a_manage_token_pages_its_own_workspace_by_status(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    later = clock.now() + DAY
    own = []
    for _ in range(3):
        own.append(key := await add_integration(pool, "fathom", workspace_id="ws-a", parked_until=later))
        await _set_state(pool, key, "error")
    theirs = await add_integration(pool, "fathom", workspace_id="ws-b", parked_until=later)
    await _set_state(pool, theirs, "error")
    manager = await _manager(pool, ["ws-a"])

    asked = [("workspace_id", "ws-a"), ("status", "error"), ("limit", "2")]
    pages = await _walk(client, asked, manager)  # the Link names ws-a again: the token follows it
    assert sorted(k for page in pages for k in page) == sorted(str(k) for k in own)
    assert [len(p) for p in pages] == [2, 1]
    for params in ([("status", "error")], [("status", "error"), ("limit", "5")]):
        refused = await client.get("/v1/sync-state", params=params, headers=manager)
        assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    other = await client.get("/v1/sync-state", params=[("workspace_id", "ws-b"), ("status", "error")], headers=manager)
    assert (other.status_code, other.json()["error"]) == (404, "workspace_not_found")
