"""Sync presets (latest N, the last N days, a range, backfill) and cancelling a run, through the
admin HTTP API of a scheduler running its real workers against PostgreSQL and NATS."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from scheduler_kit import ADMIN_TOKEN, FakeClock, StandInWorker, add_integration, state_of

from callstream.contracts import SYNC, SyncRequested
from callstream.scheduler import Policy, RunPlan, Scheduler, SyncStore

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


async def _sync(client: httpx.AsyncClient, integration_id: uuid.UUID, body: dict[str, object]) -> httpx.Response:
    return await client.post(f"/v1/integrations/{integration_id}/syncs", json=body, headers=AUTH)


async def _request_of(js: JetStreamContext, provider: str) -> SyncRequested:
    msg = await js.get_last_msg(SYNC, f"sync.requested.{provider}")
    assert msg.data is not None
    return msgspec.json.decode(msg.data, type=SyncRequested)


async def test_presets_become_runs(
    client: httpx.AsyncClient, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    now = clock.now()
    cases: list[tuple[dict[str, object], str, datetime | None, datetime | None, int | None]] = [
        ({"mode": "latest", "limit": 5}, "latest", None, None, 5),
        ({"days": 30}, "range", now - 30 * DAY, now, None),
        ({"mode": "range", "days": 7}, "range", now - 7 * DAY, now, None),
        ({"mode": "range", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, "range",
         datetime.fromisoformat("2026-01-01T00:00:00+00:00"), datetime.fromisoformat("2026-02-01T00:00:00+00:00"),
         None),
        ({"mode": "backfill"}, "backfill", None, now, None),
    ]  # fmt: skip
    for body, mode, start, end, limit in cases:
        integration_id = await add_integration(pool, "fathom", parked_until=now + DAY)
        response = await _sync(client, integration_id, body)
        assert response.status_code == 202, (body, response.text)
        request = await _request_of(js, "fathom")
        assert request.run_id == response.json()["run_id"]
        assert (request.mode, request.window.start, request.window.end, request.limit) == (mode, start, end, limit)


BAD_COMBINATIONS: list[tuple[dict[str, object], str]] = [
    ({}, "mode"),
    ({"days": 30, "mode": "latest"}, "days"),
    ({"days": 30, "mode": "backfill"}, "days"),
    ({"days": 30, "from": "2026-01-01T00:00:00Z"}, "from"),
    ({"days": 30, "to": "2026-01-01T00:00:00Z"}, "from or to"),
    ({"days": 30, "limit": 5}, "limit"),
    ({"days": 0}, "between"),
    ({"days": 100_000}, "between"),
    ({"days": "30"}, "int"),
    ({"days": True}, "int"),
    ({"mode": "latest"}, "limit"),
    ({"mode": "latest", "limit": 5, "from": "2026-01-01T00:00:00Z"}, "window"),
    ({"mode": "backfill", "limit": 5}, "backfill"),
    ({"mode": "range", "from": "2026-01-01T00:00:00Z", "limit": 5}, "limit"),
]


async def test_bad_combinations_are_400_and_create_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    for body, words in BAD_COMBINATIONS:
        response = await _sync(client, integration_id, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "bad_request"
        assert words in response.json()["detail"], (body, response.json())
    assert await pool.fetchval("select count(*) from sync_runs") == 0


async def test_a_cancelled_queued_run_never_starts(
    client: httpx.AsyncClient, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong", parked_until=clock.now() + DAY)
    run_id = (await _sync(client, integration_id, {"mode": "latest", "limit": 5})).json()["run_id"]
    seq = await pool.fetchval("select request_seq from sync_runs where id = $1", uuid.UUID(run_id))
    assert seq is not None

    response = await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    # Withdrawn from the work queue: no worker ever gets it.
    with pytest.raises(NotFoundError):
        await js.get_msg(SYNC, seq)
    assert await StandInWorker(js, clock).work() == []
    state = await state_of(pool, integration_id)
    assert (state["status"], state["last_run_id"]) == ("pending", uuid.UUID(run_id))
    # Finished, so a new run may start at once; cancelling again is a conflict.
    again = await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel", headers=AUTH)
    assert again.status_code == 409
    assert again.json()["error"] == "run_finished"
    assert (await _sync(client, integration_id, {"days": 30})).status_code == 202


async def test_a_cancelled_running_run_keeps_its_progress_and_finished_runs_are_409(
    client: httpx.AsyncClient, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    run_id = (await _sync(client, integration_id, {"days": 30})).json()["run_id"]
    worker = StandInWorker(js, clock, calls_per_page=4)
    [msg] = await worker.take()
    request = msgspec.json.decode(msg.data, type=SyncRequested)
    await worker.progress(request, 1)

    async def one_page() -> bool:
        return bool(await pool.fetchval("select pages = 1 from sync_runs where id = $1", uuid.UUID(run_id)))

    await _eventually(one_page)
    cancelled = await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["pages"]) == ("cancelled", 1)
    # The worker finds its request gone at its next page boundary (what the gateway checks) ...
    with pytest.raises(NotFoundError):
        await js.get_msg(SYNC, msg.metadata.sequence.stream)
    # ... the page it had in flight still counts, and a late 'finished' changes nothing.
    await worker.progress(request, 2)
    await worker.finish(request, "success")

    async def two_pages() -> bool:
        return bool(await pool.fetchval("select pages = 2 from sync_runs where id = $1", uuid.UUID(run_id)))

    await _eventually(two_pages)
    run = await pool.fetchrow("select * from sync_runs where id = $1", uuid.UUID(run_id))
    assert (run["status"], run["checkpoint"], run["calls_published"]) == ("cancelled", "cursor-2", 8)
    state = await state_of(pool, integration_id)
    assert state["status"] == "pending"
    assert state["watermark"] is None  # the window was not read to its end
    assert state["items_synced_total"] == 4  # what it had published when it was cancelled

    # A finished run: 409; an unknown run, or one of another integration: 404.
    assert (
        await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel", headers=AUTH)
    ).status_code == 409
    other = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    for path in (f"{integration_id}/syncs/{uuid.uuid4()}", f"{other}/syncs/{run_id}"):
        response = await client.post(f"/v1/integrations/{path}/cancel", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"] == "run_not_found"
    assert (await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel")).status_code == 401


async def _eventually(check: object, timeout: float = 10.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_request_the_broker_could_not_withdraw_at_the_cancel_is_withdrawn_by_the_next_tick(
    pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    broker: list[JetStreamContext | None] = [js]
    scheduler = Scheduler(SyncStore(lambda: pool, Policy()), clock, lambda: broker[0])
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)

    def plan(provider: Any, watermark: Any) -> RunPlan:
        return Policy().manual_plan(
            mode="latest", provider=provider, watermark=watermark, now=clock.now(), start=None, end=None, limit=5
        )

    run = await scheduler.store.create_manual_run(integration_id, plan, clock.now())
    assert await scheduler.publish_run(run)
    seq = await pool.fetchval("select request_seq from sync_runs where id = $1", run["id"])
    broker[0] = None  # the broker away at the cancel
    cancelled = await scheduler.cancel(integration_id, run["id"])
    assert cancelled["status"] == "cancelled"
    assert (await js.get_msg(SYNC, seq)).data is not None  # still in the work queue
    broker[0] = js
    await scheduler.tick()
    with pytest.raises(NotFoundError):
        await js.get_msg(SYNC, seq)
