"""Progress of a run as Server-Sent Events, over real HTTP (uvicorn) from a scheduler running its
workers against PostgreSQL and NATS: live pages, the finish event ending the stream, resuming
with Last-Event-ID (no duplicates, nothing older), finished runs, and a watcher that never reads."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from nats.js import JetStreamContext
from scheduler_kit import FakeClock, StandInWorker, add_integration

from callstream.contracts import SyncRequested
from callstream.scheduler import Settings, build_app
from callstream.scheduler._progress import QUEUE_SIZE, ProgressHub
from tests.fakes import serve_in_process

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = timedelta(days=1)


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Stream:
    """An SSE client over one streaming response: ``next()`` is the next event (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Event | None:
        event, seen = Event(), False
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if seen:
                        return event
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event.id, seen = value, True
                elif name == "event":
                    event.event, seen = value, True
                elif name == "data":
                    event.data, seen = msgspec.json.decode(value), True
        return None  # the stream ended


@pytest.fixture
async def base(
    database_url: str, nats_url: str, jetstream: JetStreamContext, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", "0.2")
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_PROGRESS_POLL_SECONDS", "0.05")
    # No normalizer here reports calls stored: a run's stream ends as soon as the run does.
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_PROGRESS_STORED_GRACE_SECONDS", "0")
    app = build_app(Settings(), clock=clock)  # type: ignore[call-arg]
    runtime = app.state.runtime
    await runtime.start()
    try:
        await asyncio.wait_for(runtime.broker.wait_connected(), timeout=10)
        async with serve_in_process(app) as url:
            yield url
    finally:
        await runtime.stop()


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, integration_id: uuid.UUID, run_id: str, last: str | None = None
) -> AsyncIterator[Stream]:
    headers = {**AUTH, **({"Last-Event-ID": last} if last is not None else {})}
    async with client.stream("GET", f"/v1/integrations/{integration_id}/syncs/{run_id}/events", headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        yield Stream(r)


async def test_live_progress_resume_and_the_end(
    base: str, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "gong", parked_until=clock.now() + DAY)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        created = await client.post(f"/v1/integrations/{integration_id}/syncs", json={"days": 30}, headers=AUTH)
        run_id = created.json()["run_id"]
        worker = StandInWorker(js, clock, pages=3, calls_per_page=4)
        [msg] = await worker.take()
        request = msgspec.json.decode(msg.data, type=SyncRequested)

        async with stream(client, integration_id, run_id) as live:
            first = await live.next()
            assert first is not None
            assert (first.event, first.id, first.data["status"], first.data["pages"]) == ("progress", "0", "queued", 0)
            await worker.progress(request, 1)
            page1 = await live.next()
            assert page1 is not None
            assert (page1.event, page1.id, page1.data["status"], page1.data["calls_published"]) == (
                "progress", "2", "running", 4,
            )  # fmt: skip
            await worker.wait(request, 1, 30, "Gong answered 429")
            waiting = await live.next()
            assert waiting is not None
            assert (waiting.id, waiting.data["waiting_for"]) == ("3", "Gong answered 429")
            await worker.progress(request, 2)
            page2 = await live.next()
            assert page2 is not None
            assert (page2.id, page2.data["pages"], page2.data["waiting_for"]) == ("4", 2, None)

            # A client that lost the connection after page 1 resumes with page 2: no duplicate.
            async with stream(client, integration_id, run_id, last="2") as again:
                resumed = await again.next()
                assert resumed is not None
                assert (resumed.id, resumed.data["pages"]) == ("4", 2)
            # One that saw page 2 already gets nothing until the next page, then that page.
            async with stream(client, integration_id, run_id, last="4") as caught_up:
                await worker.progress(request, 3)
                page3 = await caught_up.next()
                assert page3 is not None
                assert (page3.id, page3.data["pages"]) == ("6", 3)
                assert (await live.next()).id == "6"  # type: ignore[union-attr]
                await worker.finish(request, "success")
                end = await caught_up.next()
                assert end is not None
                assert (end.event, end.id, end.data["status"], end.data["calls_published"]) == (
                    "finished", "end", "success", 12,
                )  # fmt: skip
                assert await caught_up.next() is None  # the stream ends with the finish event
            end = await live.next()
            assert end is not None
            assert (end.event, end.id) == ("finished", "end")
            assert await live.next() is None
        await msg.ack()

        # A finished run: its final state, then the end; after the end, 204 (EventSource stops).
        async with stream(client, integration_id, run_id, last="4") as late:
            final = await late.next()
            assert final is not None
            assert (final.event, final.data["status"], final.data["pages"]) == ("finished", "success", 3)
            assert await late.next() is None
        path = f"/v1/integrations/{integration_id}/syncs/{run_id}/events"
        assert (await client.get(path, headers={**AUTH, "Last-Event-ID": "end"})).status_code == 204
        assert (await client.get(path)).status_code == 401
        for other in (f"/v1/integrations/{integration_id}/syncs/{uuid.uuid4()}/events",
                      f"/v1/integrations/{uuid.uuid4()}/syncs/{run_id}/events"):  # fmt: skip
            response = await client.get(other, headers=AUTH)
            assert response.status_code == 404
            assert response.json()["error"] == "run_not_found"


async def test_a_cancelled_run_ends_all_twenty_of_its_streams(
    base: str, pool: asyncpg.Pool, js: JetStreamContext, clock: FakeClock
) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        run_id = (
            await client.post(f"/v1/integrations/{integration_id}/syncs", json={"mode": "backfill"}, headers=AUTH)
        ).json()["run_id"]
        async with contextlib.AsyncExitStack() as stack:
            watchers = [await stack.enter_async_context(stream(client, integration_id, run_id)) for _ in range(20)]
            for w in watchers:
                assert (await w.next()).id == "0"  # type: ignore[union-attr]
            cancelled = await client.post(f"/v1/integrations/{integration_id}/syncs/{run_id}/cancel", headers=AUTH)
            assert cancelled.status_code == 200
            for w in watchers:
                end = await w.next()
                assert end is not None
                assert (end.event, end.data["status"]) == ("finished", "cancelled")
                assert await w.next() is None


async def test_a_watcher_that_never_reads_is_dropped(pool: asyncpg.Pool, clock: FakeClock) -> None:
    integration_id = await add_integration(pool, "fathom", parked_until=clock.now() + DAY)
    run_id = uuid.uuid4()
    await pool.execute(
        """insert into sync_runs (id, integration_id, workspace_id, provider, mode, trigger, status, created_at)
           values ($1, $2, 'ws-1', 'fathom', 'backfill', 'manual', 'running', $3)""",
        run_id,
        integration_id,
        clock.now(),
    )
    hub = ProgressHub(lambda: pool, poll_seconds=0.01, max_watchers=2)
    idle, reader = hub.subscribe(run_id), hub.subscribe(run_id)
    for page in range(1, QUEUE_SIZE + 3):
        await pool.execute("update sync_runs set pages = $2 where id = $1", run_id, page)
        await hub.poll_once()
        assert (await reader.queue.get()).pages == page
    assert idle.dropped
    assert idle.queue.qsize() == QUEUE_SIZE  # never more than its queue
    assert not reader.dropped
    assert hub.watching == 1
