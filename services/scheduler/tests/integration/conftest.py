"""Fixtures for the scheduler's integration tests (helpers live in scheduler_kit.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

# The helpers sit next to this file; how pytest imports a conftest depends on the invocation
# (a directory or one file, namespace packages), so make their folder importable explicitly.
sys.path.insert(0, str(Path(__file__).parent))
from scheduler_kit import FakeClock, make_scheduler

from callstream.runtime import create_pool
from callstream.scheduler import Scheduler


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
