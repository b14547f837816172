"""Fixtures: the linker app on the real embedded PostgreSQL and NATS JetStream, and rows written
directly into the normalizer's and gateway's tables, as those services would write them.
(Tests import nothing from here: pytest runs with --import-mode=importlib; all goes by fixture.)"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import hash_api_token
from callstream.devstack import free_port
from callstream.devstack._servers import service_nats_env
from callstream.linker import Settings, build_app

ADMIN_TOKEN = "cs_admin_" + "x" * 24
READ_ONLY_LOGIN = "callstream_linker_test"


@dataclass
class Seed:
    """Writes rows the way the normalizer and the gateway do."""

    conn: asyncpg.Connection

    async def token(self, *workspaces: str, revoked: bool = False) -> str:
        token = "cs_" + secrets.token_urlsafe(18)
        await self.conn.execute(
            "insert into api_tokens (id, name, token_hash, workspace_ids, revoked_at) values ($1, 'test', $2, $3, $4)",
            uuid.uuid4(),
            hash_api_token(token),
            list(workspaces),
            datetime.now(UTC) if revoked else None,
        )
        return token

    async def customer(self, workspace_id: str, domain: str, name: str | None = None) -> uuid.UUID:
        row = await self.conn.fetchrow(
            "insert into customers (workspace_id, domain, name, external_system) values ($1, $2, $3, 'hubspot')"
            " returning id",
            workspace_id,
            domain,
            name,
        )
        return row["id"]

    async def message(
        self,
        workspace_id: str,
        source: str,
        external_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        sent_at: datetime | None = None,
        customer_id: uuid.UUID | None = None,
        **columns: Any,
    ) -> uuid.UUID:
        values = {
            "workspace_id": workspace_id,
            "source": source,
            "external_id": external_id,
            "message_metadata": metadata or {},
            "sent_at": sent_at,
            "customer_id": customer_id,
            "content_hash": secrets.token_hex(8),
            **columns,
        }
        names = ", ".join(values)
        params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        row = await self.conn.fetchrow(
            f"insert into messages ({names}) values ({params}) returning id", *values.values()
        )
        return row["id"]

    async def gong_host(self, workspace_id: str, host: str) -> None:
        await self.conn.execute(
            "insert into provider_hosts (workspace_id, source, host) values ($1, 'gong', $2)"
            " on conflict (workspace_id, source) do update set host = excluded.host",
            workspace_id,
            host,
        )


async def codecs(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _wait_feed_live(client: AsyncTestClient[Litestar], timeout: float = 10.0) -> None:
    feed = client.app.state.event_feed
    deadline = asyncio.get_running_loop().time() + timeout
    while not feed.state().live:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the message event feed never became live")
        await asyncio.sleep(0.05)


@pytest.fixture
async def seed(database_url: str) -> AsyncIterator[Seed]:
    conn = await asyncpg.connect(database_url)
    await codecs(conn)
    try:
        yield Seed(conn)
    finally:
        await conn.close()


@pytest.fixture
async def read_only_url(database_url: str) -> str:
    """The test database as a login role that is only a member of ``callstream_linker_ro``
    (what a deployment gives the linker), so every endpoint is tested with exactly its grants."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"""do $$ begin
                    create role {READ_ONLY_LOGIN} login in role callstream_linker_ro;
                exception when duplicate_object then null;
                end $$"""
        )
    finally:
        await conn.close()
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{READ_ONLY_LOGIN}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def linker_env(monkeypatch: pytest.MonkeyPatch, database_url: str, read_only_url: str, nats_url: str) -> None:
    monkeypatch.setenv("CALLSTREAM_DATABASE_URL", database_url)
    monkeypatch.setenv("CALLSTREAM_LINKER_DATABASE_URL", read_only_url)
    monkeypatch.setenv("CALLSTREAM_NATS_URL", nats_url)
    monkeypatch.setenv("CALLSTREAM_LINKER_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("CALLSTREAM_LINKER_TOKEN_CACHE_SECONDS", "0")


@pytest.fixture
async def linker(linker_env: None, jetstream: object) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = build_app(Settings())  # type: ignore[call-arg]
    async with AsyncTestClient(app) as client:
        yield client


@pytest.fixture
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture
def wait_feed_live() -> Callable[[AsyncTestClient[Litestar]], Awaitable[None]]:
    return _wait_feed_live


@pytest.fixture
def linker_url(linker_env: None, jetstream: Any, seed: Any) -> Iterator[str]:
    """A real ``callstream-linker serve`` process (granian, RSGI in front), as deployed."""
    port = free_port()
    env = {
        **os.environ,
        "CALLSTREAM_LINKER_PORT": str(port),
        "CALLSTREAM_LOG_LEVEL": "warning",
        "CALLSTREAM_LINKER_TOKEN_CACHE_SECONDS": "5",  # the default (linker_env sets 0 for in-process tests)
    }
    env = service_nats_env("linker", env)  # the linker's own NATS identity, as deployed
    proc = subprocess.Popen([sys.executable, "-m", "callstream.linker", "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the linker exited"
            assert time.monotonic() < deadline, "the linker did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
