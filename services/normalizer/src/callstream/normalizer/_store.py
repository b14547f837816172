"""Writes a batch of mapped messages in one transaction, with their outbox rows.

Rules (enforced in SQL, so that concurrent replicas cannot race past them):
- unchanged (same content hash): no write, no event;
- older (observed before what is stored) or poorer (no transcript where one is stored): no write,
  unless the newer version is of a call made private (its transcript must go);
- otherwise insert (``created``) or update with ``version + 1`` (``updated``), and one outbox row.

The statements take the whole batch as arrays (``unnest``) and live in two SQL functions
(``migrations/0002_store_functions.sql``): four round trips per batch, never one per row. Rows are
sorted by key so that two replicas lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import msgspec

from callstream.contracts import MessageUpserted, messages_upserted_subject

from ._mapped import MappedCustomer, MappedMessage, event_title

OUTBOX_CHANNEL = "callstream_outbox"
# Held from the outbox insert to commit, so outbox ids are assigned in commit order and the relay,
# publishing in id order, publishes in commit order.
OUTBOX_ORDER_LOCK = 0x6E_6F_72_6D_6F_62_78

_EVENT = msgspec.json.Encoder()

# The statements themselves are SQL functions (migrations/0002_store_functions.sql): one round
# trip for the messages and what hangs off them, one for the outbox.
_STORE = "select * from normalizer_store_batch(" + ", ".join(f"${i}" for i in range(1, 33)) + ")"
_FINISH = "select normalizer_finish_batch($1, $2, $3, $4, $5::text[], $6::text[], $7, $8, $9)"
_CONTACTS = "select normalizer_store_contacts($1, $2, $3, $4, $5, $6, $7)"  # migrations/0004


def supersedes(new: MappedMessage, old: MappedMessage) -> bool:
    """The in-memory twin of the SQL rule, for two versions of one message in the same batch."""
    if new.observed_at < old.observed_at:
        return False
    return new.has_transcript or new.withheld or not old.has_transcript


def collapse(messages: Sequence[MappedMessage]) -> list[MappedMessage]:
    """One version per message key (an ``INSERT ... ON CONFLICT`` may touch a row only once), sorted."""
    chosen: dict[tuple[str, str, str], MappedMessage] = {}
    for message in messages:
        current = chosen.get(message.key)
        if current is None or supersedes(message, current):
            chosen[message.key] = message
    return [chosen[k] for k in sorted(chosen)]


def _customer_rank(customer: MappedCustomer) -> int:
    return 2 if customer.external_system else (1 if customer.attributes_json != b"{}" else 0)


def _customer_columns(batch: list[MappedMessage]) -> tuple[list[object], ...]:
    """One customer per (workspace, domain), the best-ranked of the batch, sorted by key."""
    chosen: dict[tuple[str, str], MappedCustomer] = {}
    for message in batch:
        customer = message.customer
        if customer is None:
            continue
        key = (message.workspace_id, customer.domain)
        if key not in chosen or _customer_rank(customer) >= _customer_rank(chosen[key]):
            chosen[key] = customer
    keys = sorted(chosen)
    rows = [chosen[k] for k in keys]
    return (
        [k[0] for k in keys],
        [k[1] for k in keys],
        [c.name for c in rows],
        [c.industry for c in rows],
        [c.website for c in rows],
        [c.external_system for c in rows],
        [c.external_id for c in rows],
        [c.attributes_json.decode() for c in rows],
    )


def _message_columns(batch: list[MappedMessage]) -> tuple[list[object], ...]:
    return (
        [m.workspace_id for m in batch],
        [m.source for m in batch],
        [m.external_id for m in batch],
        [m.integration_id for m in batch],
        [m.title for m in batch],
        [m.content for m in batch],
        [m.channel_name for m in batch],
        [m.channel_id for m in batch],
        [m.author_name for m in batch],
        [m.author_id for m in batch],
        [m.author_email for m in batch],
        [m.sent_at for m in batch],
        [m.metadata_json.decode() for m in batch],
        [m.ai_insights_json.decode() if m.ai_insights_json is not None else None for m in batch],
        [m.customer.domain if m.customer is not None else None for m in batch],
        [m.content_hash for m in batch],
        [m.observed_at for m in batch],
    )


def _participant_columns(batch: list[MappedMessage]) -> tuple[list[object], ...]:
    """Each participant with its message's 1-based place in the batch (the SQL keeps only those of
    messages it wrote)."""
    columns: tuple[list[object], ...] = ([], [], [], [], [], [], [])
    for number, message in enumerate(batch, start=1):
        for position, p in enumerate(message.participants):
            for column, value in zip(
                columns, (number, position, p.name, p.email, p.affiliation, p.speaker_id, p.role), strict=True
            ):
                column.append(value)
    return columns


def _contact_columns(
    written: Sequence[asyncpg.Record], sources: Sequence[MappedMessage]
) -> tuple[list[object], ...] | None:
    """The external participants with an email of the messages the batch wrote, one per (message,
    email); ``None`` when no written message can have (or have had) a contact, so the common
    internal-only batch costs no round trip."""
    replaced: list[object] = []
    columns: tuple[list[object], ...] = ([], [], [], [], [], [])
    for row, message in zip(written, sources, strict=True):
        if not row["created"]:
            replaced.append(row["id"])  # its earlier contacts are replaced
        seen_at = message.sent_at or message.observed_at
        emails: set[str] = set()
        for p in message.participants:
            email = (p.email or "").strip().lower()
            if p.affiliation != "external" or "@" not in email or email in emails:
                continue
            emails.add(email)
            values = (row["id"], message.workspace_id, email, p.name, p.title, seen_at)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    if not replaced and not columns[0]:
        return None
    return (replaced, *columns)


def _host_columns(batch: list[MappedMessage]) -> tuple[list[object], ...]:
    """The provider host last seen per (workspace, source): the latest observation wins."""
    hosts: dict[tuple[str, str], str] = {}
    for message in sorted(batch, key=lambda m: m.observed_at):
        if message.provider_host:
            hosts[(message.workspace_id, message.source)] = message.provider_host
    keys = sorted(hosts)
    return ([k[0] for k in keys], [k[1] for k in keys], [hosts[k] for k in keys])


async def store_batch(conn: asyncpg.Connection, messages: Sequence[MappedMessage]) -> list[MessageUpserted]:
    """Write the batch in one transaction; return the events it committed to the outbox."""
    batch = collapse(messages)
    if not batch:
        return []
    async with conn.transaction():
        written = await conn.fetch(
            _STORE, *_customer_columns(batch), *_message_columns(batch), *_participant_columns(batch)
        )
        by_key = {m.key: m for m in batch}
        sources = [by_key[_key(row)] for row in written]
        contacts = _contact_columns(written, sources)
        if contacts is not None:
            await conn.execute(_CONTACTS, *contacts)
        events = [_event(row, message) for row, message in zip(written, sources, strict=True)]
        hosts = _host_columns(batch)
        if events or hosts[0]:
            await conn.execute(
                _FINISH,
                OUTBOX_ORDER_LOCK,
                OUTBOX_CHANNEL,
                [messages_upserted_subject(e.source) for e in events],
                [_EVENT.encode(e) for e in events],
                [m.traceparent for m in sources],  # each event continues its raw call's trace
                [m.tracestate for m in sources],
                *hosts,
            )
    return events


def _event(row: asyncpg.Record, message: MappedMessage) -> MessageUpserted:
    customer_id: UUID | None = row["customer_id"]
    return MessageUpserted(
        message_id=str(row["id"]),
        workspace_id=message.workspace_id,
        source=message.source,
        external_id=message.external_id,
        customer_id=str(customer_id) if customer_id else None,
        title=event_title(message.title),
        sent_at=message.sent_at,
        link_url=message.link_url,
        link_reason=message.link_reason,
        link_sources=message.link_sources,
        change="created" if row["created"] else "updated",
        version=row["version"],
    )


def _key(row: asyncpg.Record) -> tuple[str, str, str]:
    return (row["workspace_id"], row["source"], row["external_id"])
