"""GET /v1/integrations/{id}/health from a scheduler running its workers on PostgreSQL and NATS:
each check with its reason, through a new integration, a good run, a refused credential, a stuck
run and an integration that must be connected again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, StandInWorker, add_integration, serve

from callstream.contracts import SyncRequested
from callstream.scheduler import Settings, build_app

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


@pytest.fixture
async def client(
    database_url: str, nats_url: str, jetstream: JetStreamContext, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", "0.2")
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_HEALTH_STUCK_AFTER_SECONDS", "3600")
    # The stale-run rule (10 min by default) would fail a run that has not moved for hours before the
    # health check could be asked about it: here it waits longer, so the health check is what is seen.
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_STALE_AFTER_SECONDS", str(3 * 86400))
    app = build_app(Settings(), clock=clock)  # type: ignore[call-arg]
    async with serve(app) as c:
        yield c


async def _health(client: httpx.AsyncClient, integration_id: uuid.UUID) -> tuple[bool, dict[str, tuple[bool, str]]]:
    response = await client.get(f"/v1/integrations/{integration_id}/health", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    checks = {c["name"]: (c["ok"], c["reason"]) for c in body["checks"]}
    assert body["healthy"] == all(ok for ok, _ in checks.values())
    return body["healthy"], checks


def _failing(checks: dict[str, tuple[bool, str]]) -> set[str]:
    return {name for name, (ok, _) in checks.items() if not ok}


async def _run_to_the_end(
    client: httpx.AsyncClient, js: JetStreamContext, clock: FakeClock, error: str | None = None, **worker: Any
) -> None:
    """The stand-in pull worker takes the queued run, reports its pages and finishes it."""
    w = StandInWorker(js, clock, **worker)
    for _ in range(100):
        for msg in await w.take():
            request = msgspec.json.decode(msg.data, type=SyncRequested)
            for page in range(1, w.pages + 1):
                await w.progress(request, page)
            await w.finish(request, w.outcome(request), error)
            await msg.ack()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no run to work on")


async def _settled(pool: asyncpg.Pool, integration_id: uuid.UUID) -> None:
    for _ in range(200):
        if await pool.fetchval(
            "select count(*) = 0 from sync_runs where integration_id = $1 and status in ('queued', 'running')",
            integration_id,
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not settle")


async def test_health_through_an_integrations_life(
    client: httpx.AsyncClient, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    healthy, checks = await _health(client, integration_id)
    assert not healthy
    assert list(checks) == [
        "connected", "credentials_valid", "sync_ready", "has_synced", "last_run_ok", "has_messages",
        "schedule_active", "webhook_registered",
    ]  # fmt: skip
    assert _failing(checks) == {"has_synced", "has_messages", "webhook_registered"}
    assert checks["has_synced"][1] == "no run has succeeded yet"
    assert "scheduled pulls" in checks["webhook_registered"][1]

    # A webhook secret given by hand at creation (the webhook registered outside callstream): no id, but
    # the gateway verifies what Fathom sends.
    await pool.execute("update integrations set webhook_secret = '\\x00'::bytea where id = $1", integration_id)
    _, checks = await _health(client, integration_id)
    assert checks["webhook_registered"][0], checks["webhook_registered"]
    assert checks["webhook_registered"][1].startswith("a webhook secret was given")

    # A good run with calls, and a webhook the gateway registered: healthy.
    await pool.execute("update integrations set webhook_id = 'wh-1' where id = $1", integration_id)
    assert (
        await client.post(f"/v1/integrations/{integration_id}/syncs", json={"days": 30}, headers=AUTH)
    ).status_code == 202
    await _run_to_the_end(client, js, clock)
    await _settled(pool, integration_id)
    healthy, checks = await _health(client, integration_id)
    assert healthy, checks
    assert checks["has_messages"] == (True, "6 calls synced")
    assert checks["last_run_ok"] == (True, "the last run ended success")

    # Fathom refuses the key: credentials and the last run fail, with the reason.
    assert (
        await client.post(f"/v1/integrations/{integration_id}/syncs", json={"days": 1}, headers=AUTH)
    ).status_code == 202
    await _run_to_the_end(
        client, js, clock, outcome=lambda _: "error", error="fathom refused the credentials (HTTP 401)"
    )
    await _settled(pool, integration_id)
    healthy, checks = await _health(client, integration_id)
    assert _failing(checks) == {"credentials_valid", "last_run_ok"}
    assert checks["credentials_valid"][1] == "the last run failed: fathom refused the credentials (HTTP 401)"
    assert checks["last_run_ok"][1] == "the last run ended error: fathom refused the credentials (HTTP 401)"

    # The gateway marks it reauth_required: not connected, nothing scheduled.
    await pool.execute("update integrations set status = 'reauth_required' where id = $1", integration_id)
    _, checks = await _health(client, integration_id)
    assert {"connected", "credentials_valid", "schedule_active"} <= _failing(checks)
    assert checks["connected"][1] == "the integration is reauth_required"


async def test_a_stuck_run_and_other_answers(client: httpx.AsyncClient, pool: asyncpg.Pool, clock: FakeClock) -> None:
    integration_id = await add_integration(pool, "gong", parked_until=clock.now() + DAY)
    run_id = uuid.uuid4()
    # A backfill going for three hours, still moving (a long backfill at a provider's rate limit): ready.
    await pool.execute(
        """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at,
                                  started_at, last_progress_at)
           values ($1, $2, 'ws-1', 'gong', 'backfill', 'manual', 'running', $3, $3, $4)""",
        run_id,
        integration_id,
        clock.now() - timedelta(hours=3),
        clock.now() - timedelta(minutes=5),
    )
    _, checks = await _health(client, integration_id)
    assert "webhook_registered" not in checks  # Gong sends no webhooks
    assert checks["sync_ready"] == (True, f"run {run_id} is running since 3 h, last moved 5 min ago")
    # No progress for two hours: stuck past the bound.
    await pool.execute(
        "update sync_runs set last_progress_at = $2 where id = $1", run_id, clock.now() - timedelta(hours=2)
    )
    _, checks = await _health(client, integration_id)
    assert checks["sync_ready"] == (False, f"run {run_id} is running but has not moved for 2 h (more than 60 min)")
    # A wait it announced (a spent quota) until later: not stuck.
    resume = clock.now() + timedelta(hours=1)
    await pool.execute("update sync_runs set resume_after = $2 where id = $1", run_id, resume)
    _, checks = await _health(client, integration_id)
    assert checks["sync_ready"] == (True, f"run {run_id} is running since 3 h, waiting until {resume.isoformat()}")

    assert (await client.get(f"/v1/integrations/{uuid.uuid4()}/health", headers=AUTH)).status_code == 404
    assert (await client.get(f"/v1/integrations/{integration_id}/health")).status_code == 401
