"""Which failures are worth retrying and which mean the payload itself can never be stored."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.errors

# SQLSTATE classes: connection, invalid transaction state (25006: a replica or a failed-over
# primary that is read-only for now), transaction rollback (serialization, deadlock), insufficient
# resources, object not in prerequisite state (lock not available), operator intervention, system.
_TRANSIENT_CLASSES = frozenset({"08", "25", "40", "53", "55", "57", "58"})
# data exception (bad value), program limit exceeded (e.g. an index row too large).
_POISON_CLASSES = frozenset({"22", "54"})


def is_poison(exc: BaseException) -> bool:
    """The data of one message is at fault: retrying the same bytes would fail the same way."""
    if isinstance(exc, (asyncpg.exceptions.DataError, UnicodeEncodeError)):
        return True
    return isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "")[:2] in _POISON_CLASSES


def is_transient(exc: BaseException) -> bool:
    if is_poison(exc):
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _TRANSIENT_CLASSES
    return isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, ConnectionError, nats.errors.Error))
