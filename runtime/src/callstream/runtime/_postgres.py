"""PostgreSQL pool that never blocks start-up: connections are made on demand, and a background
probe waits for the server with backoff so readiness tells the truth while it is away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from ._logging import get_logger

log = get_logger(__name__)

DEFAULT_POOL_MAX = 10
PROBE_TIMEOUT_SECONDS = 1.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, max_size: int = DEFAULT_POOL_MAX, timeout: float = 5.0, **kwargs: Any
) -> asyncpg.Pool:
    """A pool with ``min_size=0``: creating it needs no server, and a connection lost while the
    server restarts is replaced on the next acquire."""
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        timeout=timeout,
        command_timeout=60,
        init=_init_connection,
        **kwargs,
    )


async def wait_for_postgres(pool: asyncpg.Pool) -> None:
    """Return once a query succeeds, logging while the server is unreachable."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        retry=retry_if_exception_type((OSError, asyncpg.PostgresError, asyncio.TimeoutError, asyncpg.InterfaceError)),
        before_sleep=lambda s: log.warning("postgres unreachable, retrying", attempt=s.attempt_number),
    ):
        with attempt:
            await check_postgres(pool)


async def check_postgres(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
        await pool.fetchval("select 1")
