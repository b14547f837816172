"""Fixtures for the scheduler's integration tests (helpers live in scheduler_kit.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext

# The helpers sit next to this file; how pytest imports a conftest depends on the invocation
# (a directory or one file, namespace packages), so make their folder importable explicitly.
sys.path.insert(0, str(Path(__file__).parent))
from scheduler_kit import ADMIN_TOKEN, FakeClock, make_scheduler, serve

from callstream.runtime import create_pool
from callstream.scheduler import Scheduler, Settings, build_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def js(jetstream: JetStreamContext) -> JetStreamContext:
    return jetstream


@pytest.fixture
def scheduler(pool: asyncpg.Pool, clock: FakeClock, js: JetStreamContext) -> Scheduler:
    made: Scheduler = make_scheduler(pool, clock, js)
    return made


@pytest.fixture
async def client(
    database_url: str, nats_url: str, jetstream: JetStreamContext, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The scheduler's app on this test's database and streams, its admin token ``ADMIN_TOKEN``, the
    due loop quick. (A test file needing other settings defines a ``client`` of its own.)"""
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("CALLSTREAM_SCHEDULER_LOOP_SECONDS", "0.2")
    app = build_app(Settings(), clock=clock)  # type: ignore[call-arg]
    async with serve(app) as c:
        yield c
