"""Fixtures: the linker app on the real embedded PostgreSQL and NATS JetStream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from linker_testkit import ADMIN_TOKEN, Seed, codecs
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.linker import Settings, build_app


@pytest.fixture
async def seed(database_url: str) -> AsyncIterator[Seed]:
    conn = await asyncpg.connect(database_url)
    await codecs(conn)
    try:
        yield Seed(conn)
    finally:
        await conn.close()


@pytest.fixture
def linker_env(monkeypatch: pytest.MonkeyPatch, database_url: str, nats_url: str) -> None:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("CALLSTREAM_LINKER_TOKEN_CACHE_SECONDS", "0")


@pytest.fixture
async def linker(linker_env: None, jetstream: object) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = build_app(Settings())  # type: ignore[call-arg]
    async with AsyncTestClient(app) as client:
        yield client


