"""Fixtures for the normalizer's integration tests (helpers live in normalizer_itkit.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from callstream.runtime import create_pool

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module next to this file
from normalizer_itkit import NormalizerProcess


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=5)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def nc(nats_url: str, jetstream: object) -> AsyncIterator[Any]:
    conn = await nats.connect(nats_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def normalizer_processes(tmp_path: Path) -> Iterator[list[NormalizerProcess]]:
    """Processes a test starts; stopped (then killed if need be) at the end."""
    started: list[NormalizerProcess] = []
    yield started
    for process in started:
        process.stop()
