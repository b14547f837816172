"""Calls gone at the provider become tombstones: ``CallsListed`` (``calls.listed.>``) in, ``MessageDeleted`` out.

A reconciling pull run that read its whole window publishes every id the provider listed in it.
A deletion is "a reconcile window that no longer lists a call it listed before" (issue #19): each
listing marks the messages it names (``messages.last_listed_at``, ``migrations/0010_listed_before.sql``),
and a stored message of that integration is judged by the listing only when all of this holds:
- an earlier complete listing of its integration named it (a call stored by webhook that the listing
  never returns, e.g. a Fathom recording shared from outside the org, is not the listing's to judge);
- its provider list time (Fathom ``created_at``, Gong ``started``: what the provider's list filter
  reads) lies in the window;
- it was stored, and last observed, before the listing began (a newer observation wins);
- it is not a private Gong call (a call made private is hidden, not deleted);
- it is not a tombstone already.
Such a message missing from the listing, or listed with a recording that answered 404
(``gone_external_ids``), is gone at the provider: :func:`tombstone` erases its
content, metadata, participants and data points, takes it out of its contacts (their counts follow,
a contact no call names any more goes) and off its customer, and announces ``MessageDeleted`` through
the outbox in the same transaction. Its row, id and provider identity stay, so the linker answers
410 Gone with the reason; a later version observed after the tombstone brings it back
(``migrations/0007_tombstones.sql``). Erasure and retention are meant to call :func:`tombstone`
with their own reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec
from nats.aio.msg import Msg

from callstream.contracts import (
    NORMALIZER_LISTINGS_CONSUMER,
    CallsListed,
    DeletionReason,
    MessageDeleted,
    messages_deleted_subject,
)
from callstream.runtime import Redelivery, ServiceRuntime, Unprocessable, consume, get_logger, wait_for_postgres

from ._errors import is_poison
from ._mapped import METADATA_VERSION, parse_time
from ._settings import Settings
from ._store import OUTBOX_CHANNEL, OUTBOX_ORDER_LOCK

log = get_logger(__name__)

__all__ = ["announce_deleted", "apply_listing", "run_listing_consumer", "tombstone"]

_DECODER = msgspec.json.Decoder(CallsListed)
_EVENT = msgspec.json.Encoder()
REDELIVERY = Redelivery(first_delay=5.0, max_delay=300.0)
TOMBSTONE_HASH = "tombstone"
# The metadata key the provider's list filter reads, per source.
LIST_TIME_KEY = {"fathom": "created_at", "gong": "started"}
# ``sent_at`` (when the call started) comes before the list time (Fathom creates a meeting when
# its recording ends): candidates are found through the sent_at index with this much room.
SENT_BEFORE_LISTED = timedelta(days=2)

_CANDIDATES = """
select id, external_id, message_metadata ->> $7 as list_time
from messages
where workspace_id = $1 and source = $2 and integration_id = $3
  and sent_at >= $4 and sent_at < $5
  and deleted_at is null and created_at < $6 and (source_updated_at is null or source_updated_at < $6)
  and ((last_listed_at < $6 and not (external_id = any($8::text[]))) or external_id = any($9::text[]))
  and coalesce(message_metadata ->> 'private', '') <> 'true'
"""
# A listed recording that answered 404 needs no earlier listing: this listing names the call, so it
# is one the integration's listing returns (not a shared external recording), and the 404 is the
# provider saying it is gone, not an absence read into a listing.
# The ids this listing names, of its integration, are marked listed (never moved back: a listing
# applied late is older). Locked in the store's key order.
_MARK = """
update messages m set last_listed_at = $5
from (select id from messages
      where workspace_id = $1 and source = $2 and integration_id = $3 and external_id = any($4::text[])
        and (last_listed_at is null or last_listed_at < $5)
      order by external_id
      for update) listed
where m.id = listed.id
"""
_CONTACTS = "select normalizer_store_contacts($1, '{}', '{}', '{}', '{}', '{}', '{}')"  # migrations/0004
# Judged again under the row lock: a version stored meanwhile (observed after the listing) wins.
_ERASE = """
update messages set
    title = null, content = '', author_name = null, author_id = null, author_email = null,
    message_metadata = jsonb_build_object('metadata_version', $5::int), ai_insights = null, customer_id = null,
    content_hash = $4, source_updated_at = greatest(source_updated_at, $3), version = version + 1,
    deleted_at = $3, deleted_reason = $2, updated_at = now()
where id = any($1::uuid[]) and deleted_at is null and (source_updated_at is null or source_updated_at < $3)
returning id, workspace_id, source, external_id, version
"""
_FINISH = "select normalizer_finish_batch($1, $2, $3, $4, $5::text[], $6::text[], '{}', '{}', '{}')"


async def tombstone(
    conn: asyncpg.Connection, message_ids: Sequence[UUID], reason: DeletionReason, at: datetime
) -> list[MessageDeleted]:
    """Make these messages tombstones in one transaction, with their ``MessageDeleted`` in the
    outbox; returns the events (a message already a tombstone, or observed at or after ``at``, is
    left alone)."""
    if not message_ids:
        return []
    ids = sorted(set(message_ids))  # the store's lock order
    async with conn.transaction():
        # The metadata keeps only its version: a tombstone is of the current shape, so rederive
        # (which looks for rows without one) never picks it up again and again.
        gone = await conn.fetch(_ERASE, ids, reason, at, TOMBSTONE_HASH, METADATA_VERSION)
        erased = [row["id"] for row in gone]
        if not erased:
            return []
        await conn.execute(_CONTACTS, erased)  # contact links and counts follow
        await conn.execute("delete from message_participants where message_id = any($1::uuid[])", erased)
        # Evidence quotes are transcript text.
        await conn.execute("delete from data_points where message_id = any($1::uuid[])", erased)
        events = [
            MessageDeleted(
                message_id=str(row["id"]),
                workspace_id=row["workspace_id"],
                source=row["source"],
                external_id=row["external_id"],
                reason=reason,
                deleted_at=at,
                version=row["version"],
            )
            for row in gone
        ]
        await announce_deleted(conn, events)
    return events


async def announce_deleted(conn: asyncpg.Connection, events: Sequence[MessageDeleted]) -> None:
    """``MessageDeleted`` through the outbox, in the caller's transaction (tombstones, erasure)."""
    await conn.execute(
        _FINISH,
        OUTBOX_ORDER_LOCK,
        OUTBOX_CHANNEL,
        [messages_deleted_subject(e.source) for e in events],
        [_EVENT.encode(e) for e in events],
        [None] * len(events),
        [None] * len(events),
    )


def _in_window(value: str | None, start: datetime, end: datetime) -> bool:
    """Strictly inside: whether a provider's filter includes its ends is not documented (Fathom's
    ``created_after``/``created_before``), and a call on an end is judged by the next listing. The
    gateway asks the provider for whole seconds (the end cut down to its second): a call in the
    fraction of a second after that was not asked for, so the end judged is the one asked."""
    at = parse_time(value)
    return at is not None and start < at < end.replace(microsecond=0)


async def apply_listing(conn: asyncpg.Connection, listing: CallsListed) -> list[MessageDeleted]:
    """Tombstone the integration's stored messages that this complete listing no longer names."""
    start, end = listing.window.start, listing.window.end
    if start is None or end is None:
        raise Unprocessable("a listing needs both ends of its window")
    async with conn.transaction():  # judged by earlier listings, then marked by this one
        rows = await conn.fetch(
            _CANDIDATES,
            listing.workspace_id,
            listing.source,
            listing.integration_id,
            start - SENT_BEFORE_LISTED,
            end,
            listing.listed_at,
            LIST_TIME_KEY[listing.source],
            listing.external_ids,
            listing.gone_external_ids,
        )
        missing = [row["id"] for row in rows if _in_window(row["list_time"], start, end)]
        if missing and not listing.external_ids:
            # A provider that lists nothing at all where it listed calls before has far more likely
            # stopped showing them to this integration (a Gong API user that lost its visibility, a
            # filter gone wrong) than had every one deleted: nothing is judged, loudly.
            log.warning(
                "provider listing empty where calls were listed before: nothing judged",
                integration_id=listing.integration_id,
                run_id=listing.run_id,
                listed_before=len(missing),
            )
            missing = []
        events = await tombstone(conn, missing, "provider_deleted", listing.listed_at)
        marked = await conn.execute(
            _MARK,
            listing.workspace_id,
            listing.source,
            listing.integration_id,
            listing.external_ids,
            listing.listed_at,
        )
    log.info(
        "provider listing applied",
        integration_id=listing.integration_id,
        run_id=listing.run_id,
        listed=len(listing.external_ids),
        marked=int(marked.split()[-1]),
        tombstoned=len(events),
    )
    return events


async def _handle(pool: asyncpg.Pool, msg: Msg) -> None:
    try:
        listing = _DECODER.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"unusable listing: {exc}") from exc
    try:
        async with pool.acquire() as conn:
            await apply_listing(conn, listing)
    except Exception as exc:
        if is_poison(exc):
            raise Unprocessable(f"rejected by the database: {type(exc).__name__}: {exc}") from exc
        raise


async def run_listing_consumer(runtime: ServiceRuntime, settings: Settings) -> None:
    """The worker (under the runtime's supervisor): listings one at a time, in stream order."""
    await runtime.broker.wait_connected()
    await consume(
        runtime.broker.js,
        NORMALIZER_LISTINGS_CONSUMER,
        lambda msg: _handle(runtime.db, msg),
        runtime.stopping,
        batch=1,
        fetch_timeout=settings.fetch_timeout_seconds,
        redelivery=REDELIVERY,
        recover=lambda: wait_for_postgres(runtime.db, runtime.stopping),
    )
