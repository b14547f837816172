"""PostgreSQL pool that never blocks start-up: connections are made on demand, and a background
probe waits for the server with backoff so readiness tells the truth while it is away."""

from __future__ import annotations

import asyncio
import contextlib
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


async def _release_as_is(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release beyond asyncpg's own step (which rolls back a
    transaction left open): nothing. asyncpg's default reset adds a round trip of four statements
    per use (unlock every advisory lock, CLOSE ALL, UNLISTEN *, RESET ALL) to undo session state no
    service leaves behind: advisory locks on pooled connections are transaction-scoped, nothing
    SETs a session variable or keeps a cursor, and the two listeners (the gateway's secret cache,
    the normalizer's outbox relay) UNLISTEN in a ``finally``. Migrations, which take a session
    lock, use a connection of their own. Measured on the linker's look-ups by id: the reset was
    about as much PostgreSQL work as the query itself."""


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
        reset=_release_as_is,
        **kwargs,
    )


async def wait_for_postgres(pool: asyncpg.Pool, stopping: asyncio.Event | None = None) -> None:
    """Return once a query succeeds, logging while the server is unreachable; with ``stopping``,
    also return (at once, mid-wait) when the service stops. Consumers await it after a transient
    failure, so they do not fetch work the database cannot take yet."""

    async def sleep(seconds: float) -> None:
        if stopping is None:
            await asyncio.sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=seconds)

    async for attempt in AsyncRetrying(
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        retry=retry_if_exception_type((OSError, asyncpg.PostgresError, asyncio.TimeoutError, asyncpg.InterfaceError)),
        stop=lambda _: stopping is not None and stopping.is_set(),
        retry_error_callback=lambda _: None,  # stopped while waiting: nothing to raise
        sleep=sleep,
        before_sleep=lambda s: log.warning("postgres unreachable, retrying", attempt=s.attempt_number),
    ):
        with attempt:
            await check_postgres(pool)


async def check_postgres(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
        await pool.fetchval("select 1")
