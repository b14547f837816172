"""Writes a batch of mapped messages in one transaction, with their outbox rows.

Rules (enforced in SQL, so that concurrent replicas cannot race past them):
- unchanged (same content hash): no write, no event;
- older (observed before what is stored) or poorer (no transcript where one is stored): no write,
  unless the newer version is of a call made private (its transcript must go);
- otherwise insert (``created``) or update with ``version + 1`` (``updated``), and one outbox row.

Every statement takes the whole batch as arrays (``unnest``): a handful of round trips per batch,
never one per row. Rows are sorted by key so that two replicas lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import msgspec

from callstream.contracts import MessageUpserted, messages_upserted_subject

from ._mapped import MappedCustomer, MappedMessage

OUTBOX_CHANNEL = "callstream_outbox"
# Held from the outbox insert to commit, so outbox ids are assigned in commit order and the relay,
# publishing in id order, publishes in commit order.
OUTBOX_ORDER_LOCK = 0x6E_6F_72_6D_6F_62_78

_EVENT = msgspec.json.Encoder()

_UPSERT_CUSTOMERS = """
insert into customers as c (workspace_id, domain, name, industry, website, external_system, external_id, attributes)
select w, d, n, i, ws, es, ei, a::jsonb
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
     as r(w, d, n, i, ws, es, ei, a)
on conflict (workspace_id, domain) do update set
    name = excluded.name, industry = excluded.industry, website = excluded.website,
    external_system = excluded.external_system, external_id = excluded.external_id,
    attributes = excluded.attributes, updated_at = now()
where
    -- a CRM account beats a CRM-named match, which beats a guess from the domain: never downgrade
    (case when excluded.external_system is not null then 2 when excluded.attributes <> '{}' then 1 else 0 end)
    >= (case when c.external_system is not null then 2 when c.attributes <> '{}' then 1 else 0 end)
    and (c.name, c.industry, c.website, c.external_system, c.external_id, c.attributes)
        is distinct from
        (excluded.name, excluded.industry, excluded.website, excluded.external_system, excluded.external_id,
         excluded.attributes)
"""

_CUSTOMER_IDS = """
select c.id, c.workspace_id, c.domain
from customers c join unnest($1::text[], $2::text[]) as r(w, d) on c.workspace_id = r.w and c.domain = r.d
"""

_UPSERT_MESSAGES = """
insert into messages as m (workspace_id, source, external_id, integration_id, title, content, channel_name,
    channel_id, author_name, author_id, author_email, sent_at, message_metadata, ai_insights, customer_id,
    content_hash, source_updated_at)
select w, s, e, i, t, c, cn, ci, an, aid, ae, sa, mm::jsonb, ai::jsonb, cu, h, su
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[], $14::text[], $15::uuid[],
            $16::text[], $17::timestamptz[])
     as r(w, s, e, i, t, c, cn, ci, an, aid, ae, sa, mm, ai, cu, h, su)
on conflict (workspace_id, source, external_id) do update set
    integration_id = excluded.integration_id, title = excluded.title, content = excluded.content,
    channel_name = excluded.channel_name, channel_id = excluded.channel_id, author_name = excluded.author_name,
    author_id = excluded.author_id, author_email = excluded.author_email, sent_at = excluded.sent_at,
    message_metadata = excluded.message_metadata, ai_insights = excluded.ai_insights,
    customer_id = excluded.customer_id, content_hash = excluded.content_hash,
    source_updated_at = excluded.source_updated_at, version = m.version + 1, updated_at = now()
where m.content_hash <> excluded.content_hash
    and (m.source_updated_at is null or excluded.source_updated_at >= m.source_updated_at)
    and (octet_length(excluded.content) > 0 or octet_length(m.content) = 0
         or (excluded.message_metadata ->> 'private') = 'true')
returning m.id, m.workspace_id, m.source, m.external_id, m.version, (m.xmax = 0) as created
"""

_DELETE_PARTICIPANTS = "delete from message_participants where message_id = any($1::uuid[])"
_INSERT_PARTICIPANTS = """
insert into message_participants (message_id, position, name, email, affiliation, speaker_id, role)
select * from unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
"""

_LINK_PENDING_FEATURES = """
update message_features mf set message_id = r.id
from unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) as r(id, w, s, e)
where mf.message_id is null and mf.workspace_id = r.w and mf.source = r.s and mf.external_id = r.e
"""

_INSERT_OUTBOX = "insert into outbox (subject, payload) select * from unnest($1::text[], $2::bytea[])"

_REMEMBER_HOSTS = """
insert into provider_hosts as p (workspace_id, source, host)
select * from unnest($1::text[], $2::text[], $3::text[])
on conflict (workspace_id, source) do update set host = excluded.host, seen_at = now()
where p.host <> excluded.host
"""


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


async def _upsert_customers(conn: asyncpg.Connection, batch: list[MappedMessage]) -> dict[tuple[str, str], UUID]:
    chosen: dict[tuple[str, str], MappedCustomer] = {}
    for message in batch:
        customer = message.customer
        if customer is None:
            continue
        key = (message.workspace_id, customer.domain)
        if key not in chosen or _customer_rank(customer) >= _customer_rank(chosen[key]):
            chosen[key] = customer
    if not chosen:
        return {}
    keys = sorted(chosen)
    rows = [chosen[k] for k in keys]
    workspaces = [k[0] for k in keys]
    domains = [k[1] for k in keys]
    await conn.execute(
        _UPSERT_CUSTOMERS,
        workspaces,
        domains,
        [c.name for c in rows],
        [c.industry for c in rows],
        [c.website for c in rows],
        [c.external_system for c in rows],
        [c.external_id for c in rows],
        [c.attributes_json.decode() for c in rows],
    )
    # A second statement sees rows another replica committed meanwhile (read committed).
    found = await conn.fetch(_CUSTOMER_IDS, workspaces, domains)
    return {(r["workspace_id"], r["domain"]): r["id"] for r in found}


async def store_batch(conn: asyncpg.Connection, messages: Sequence[MappedMessage]) -> list[MessageUpserted]:
    """Write the batch in one transaction; return the events it committed to the outbox."""
    batch = collapse(messages)
    if not batch:
        return []
    async with conn.transaction():
        customer_ids = await _upsert_customers(conn, batch)
        customer_of = [
            customer_ids.get((m.workspace_id, m.customer.domain)) if m.customer is not None else None for m in batch
        ]
        written = await conn.fetch(
            _UPSERT_MESSAGES,
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
            customer_of,
            [m.content_hash for m in batch],
            [m.observed_at for m in batch],
        )
        events: list[MessageUpserted] = []
        if written:
            by_key = {m.key: (m, c) for m, c in zip(batch, customer_of, strict=True)}
            await _replace_participants(conn, [(row["id"], by_key[_key(row)][0]) for row in written])
            created = [row for row in written if row["created"]]
            if created:
                await conn.execute(
                    _LINK_PENDING_FEATURES,
                    [r["id"] for r in created],
                    [r["workspace_id"] for r in created],
                    [r["source"] for r in created],
                    [r["external_id"] for r in created],
                )
            for row in written:
                message, customer_id = by_key[_key(row)]
                events.append(
                    MessageUpserted(
                        message_id=str(row["id"]),
                        workspace_id=message.workspace_id,
                        source=message.source,
                        external_id=message.external_id,
                        customer_id=str(customer_id) if customer_id else None,
                        title=message.title,
                        sent_at=message.sent_at,
                        link_url=message.link_url,
                        link_sources=message.link_sources,
                        change="created" if row["created"] else "updated",
                        version=row["version"],
                    )
                )
            await _write_outbox(conn, events)
        await _remember_hosts(conn, batch)
    return events


def _key(row: asyncpg.Record) -> tuple[str, str, str]:
    return (row["workspace_id"], row["source"], row["external_id"])


async def _replace_participants(conn: asyncpg.Connection, written: list[tuple[UUID, MappedMessage]]) -> None:
    await conn.execute(_DELETE_PARTICIPANTS, [message_id for message_id, _ in written])
    columns: tuple[list[object], ...] = ([], [], [], [], [], [], [])
    for message_id, message in written:
        for position, p in enumerate(message.participants):
            for column, value in zip(
                columns, (message_id, position, p.name, p.email, p.affiliation, p.speaker_id, p.role), strict=True
            ):
                column.append(value)
    if columns[0]:
        await conn.execute(_INSERT_PARTICIPANTS, *columns)


async def _write_outbox(conn: asyncpg.Connection, events: list[MessageUpserted]) -> None:
    await conn.execute("select pg_advisory_xact_lock($1)", OUTBOX_ORDER_LOCK)
    await conn.execute(
        _INSERT_OUTBOX,
        [messages_upserted_subject(e.source) for e in events],
        [_EVENT.encode(e) for e in events],
    )
    await conn.execute("select pg_notify($1, '')", OUTBOX_CHANNEL)


async def _remember_hosts(conn: asyncpg.Connection, batch: list[MappedMessage]) -> None:
    hosts: dict[tuple[str, str], str] = {}
    for message in sorted(batch, key=lambda m: m.observed_at):
        if message.provider_host:
            hosts[(message.workspace_id, message.source)] = message.provider_host
    if hosts:
        keys = sorted(hosts)
        await conn.execute(_REMEMBER_HOSTS, [k[0] for k in keys], [k[1] for k in keys], [hosts[k] for k in keys])
