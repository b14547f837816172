"""The webhook path's view of integrations, held in memory so that it never reads the database.

Filled at start, refreshed for one integration when PostgreSQL notifies a change (``LISTEN``), and
reloaded in full every TTL in case a notification was lost (e.g. while the listening connection was
down). While the database is away the last known state keeps serving; before the first load the
cache is not ``ready`` and webhooks answer 503 so that the sender retries.

Reloads overlap (a NOTIFY arrives while a full reload's query is in flight), so each one takes a
ticket from one counter before it sends its query, and its rows replace an entry only when no
reload with a later ticket has written that entry: a full reload that read the table before a
disable can never bring the old secret back after the disable's own reload applied it. Entries are
keyed by the canonical UUID, so every spelling of an id (case, braces, ``urn:uuid:``, no dashes) is
the one entry, whichever spelling announced a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from callstream.runtime import get_logger

from ._credentials import BadWebhookSecret, open_webhook_secret, webhook_key
from ._crypto import Cipher, DecryptionError

log = get_logger(__name__)

CHANNEL = "callstream_gateway_integrations"
_COLUMNS = "select id::text, workspace_id, provider, status, webhook_secret from integrations"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    integration_id: str
    workspace_id: str
    provider: str
    status: str
    keys: tuple[bytes, ...]  # empty: no usable secret, every delivery is refused


def canonical_id(integration_id: str) -> str | None:
    """The id as PostgreSQL writes it (``uuid::text``), or ``None`` when it is not a UUID."""
    try:
        return str(uuid.UUID(integration_id))
    except ValueError:
        return None


class WebhookSecretCache:
    def __init__(self, cipher: Cipher, ttl_seconds: float) -> None:
        self._cipher = cipher
        self._ttl = ttl_seconds
        self._targets: dict[str, WebhookTarget] = {}  # by canonical id
        self._loaded_at: float | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._tickets = itertools.count(1)
        # The ticket of the last full reload applied: every entry is at least that new ...
        self._floor = 0
        # ... except these, written (or removed) by a single reload with a later ticket.
        self._newer: dict[str, int] = {}

    @property
    def ready(self) -> bool:
        return self._loaded_at is not None

    def get(self, integration_id: str) -> WebhookTarget | None:
        target = self._targets.get(integration_id)  # the canonical spelling: one look-up
        if target is None and (key := canonical_id(integration_id)) is not None and key != integration_id:
            target = self._targets.get(key)
        return target

    def _target(self, row: Mapping[str, Any]) -> WebhookTarget:
        keys: tuple[bytes, ...] = ()
        if row["webhook_secret"] is not None:
            try:
                keys = (webhook_key(open_webhook_secret(self._cipher, row["id"], row["webhook_secret"])),)
            except (DecryptionError, BadWebhookSecret) as exc:
                log.error("webhook secret unusable", integration_id=row["id"], error=type(exc).__name__)
        return WebhookTarget(row["id"], row["workspace_id"], row["provider"], row["status"], keys)

    async def reload_all(self, pool: asyncpg.Pool) -> None:
        ticket = next(self._tickets)
        rows = await pool.fetch(_COLUMNS + " where provider = 'fathom'")
        if ticket < self._floor:
            return  # a full reload sent after this one has been applied already
        # Entries written by a single reload that took its ticket after this one stay as they are:
        # its query was sent later, so it saw at least what this one saw.
        kept = {key: stamp for key, stamp in self._newer.items() if stamp > ticket}
        targets = {row["id"]: self._target(row) for row in rows if row["id"] not in kept}
        for key in kept:
            if key in self._targets:
                targets[key] = self._targets[key]
        self._targets, self._newer, self._floor = targets, kept, ticket
        self._loaded_at = time.monotonic()

    async def reload_one(self, pool: asyncpg.Pool, integration_id: str) -> None:
        key = canonical_id(integration_id)
        if key is None:
            return
        ticket = next(self._tickets)
        row = await pool.fetchrow(_COLUMNS + " where id = $1", uuid.UUID(key))
        if ticket < self._newer.get(key, self._floor):
            return  # a reload sent after this one has written the entry already
        self._newer[key] = ticket
        if row is None or row["provider"] != "fathom":
            self._targets.pop(key, None)
        else:
            self._targets[key] = self._target(row)

    async def run(self, pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
        """The worker: listen for changes and reload on the TTL until ``stopping``. A lost
        connection or an unreachable database escapes to the runtime's supervisor, which starts
        it again with backoff (and a full reload: nothing changed meanwhile is missed)."""
        try:
            async with pool.acquire() as conn:
                listener = self._notified(pool)
                await conn.add_listener(CHANNEL, listener)
                try:
                    # Load after LISTEN, so no change between the two can be missed.
                    await self.reload_all(pool)
                    while not stopping.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stopping.wait(), self._ttl)
                        if stopping.is_set():
                            break
                        await self.reload_all(pool)
                        await conn.execute("select 1")  # notices a dead listening connection
                        if conn.is_closed():
                            raise ConnectionError("the secret cache's listening connection was lost")
                finally:
                    # The pool does not UNLISTEN on release: a connection handed back still
                    # listening would receive every change notice from then on.
                    if not conn.is_closed():
                        await conn.remove_listener(CHANNEL, listener)
        finally:
            for task in list(self._pending):
                task.cancel()

    def _notified(self, pool: asyncpg.Pool) -> Any:
        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            task = asyncio.get_running_loop().create_task(self._reload_quietly(pool, payload))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        return on_notify

    async def _reload_quietly(self, pool: asyncpg.Pool, integration_id: str) -> None:
        try:
            await self.reload_one(pool, integration_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("webhook secret reload failed", integration_id=integration_id, error=type(exc).__name__)
