"""Link look-ups: the hot-link cache in front of the queries, and resolution on top."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import asyncpg
import msgspec

from callstream.runtime import KeysetCursor, encode_keyset_cursor

from . import _queries as q
from ._auth import Access, gone, not_found
from ._cache import LinkCache, is_unknown_host
from ._etag import etag_of
from ._links import HostAllowList, Link, LinkFacts, needs_gong_host, resolve_link
from ._schemas import Author, LinkRecord, MessageSummary, link_record

_encode = msgspec.json.Encoder().encode


def seconds_of(value: object) -> int | None:
    """A stored ``duration_seconds`` as whole seconds (Gong sends a float), or None for anything
    that is not a non-negative finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return math.floor(value + 0.5)  # half up, as people round (round() goes half to even: 2.5 -> 2)


class RenderedLink(msgspec.Struct, frozen=True, gc=False):
    """A link record with the JSON bytes ``GET /v1/links`` answers and their ``ETag``: kept in the
    cache next to the record, so a hot look-up encodes and hashes nothing."""

    record: LinkRecord
    body: bytes
    etag: bytes

    @classmethod
    def of(cls, record: LinkRecord) -> RenderedLink:
        body = _encode(record)
        return cls(record, body, etag_of(body))


class LinkLookup:
    def __init__(self, pool: Callable[[], asyncpg.Pool], cache: LinkCache, allow: HostAllowList) -> None:
        self._pool = pool
        self.cache = cache
        self.allow = allow

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    async def by_ident(self, access: Access, workspace_id: str, source: str, external_id: str) -> LinkRecord:
        access.require(workspace_id, "message")
        facts = self.cache.by_ident(workspace_id, source, external_id)
        if facts is None:
            epoch = self.cache.epoch
            facts = await q.facts_by_ident(self._pool(), workspace_id, source, external_id)
            if facts is None:
                raise not_found("message")
            self.cache.store(facts, epoch)
        if facts.deleted_reason is not None:
            raise gone(facts.deleted_reason)
        return await self.record(facts)

    def cached_answer(self, ident: tuple[str, str, str]) -> RenderedLink | None:
        """The answer of :meth:`by_ident`, rendered, when the cache alone can give it, else ``None``."""
        hit = self.cache.hot(ident)
        if hit is None:
            return None
        facts, memo = hit
        if facts.deleted_reason is not None:  # a 410, answered by the full path
            return None
        # The usual case first, before needs_gong_host: nothing that depends on a workspace's Gong
        # host is ever remembered (remember_resolved is reached only below that branch).
        if type(memo) is RenderedLink:
            return memo
        if needs_gong_host(facts):
            host = self.cache.gong_host(facts.workspace_id)
            if is_unknown_host(host):
                return None
            return RenderedLink.of(self._record(facts, host if isinstance(host, str) else None))
        rendered = RenderedLink.of(self._memoised(facts))
        self.cache.remember_resolved(facts, rendered)
        return rendered

    async def facts_by_id(self, access: Access, message_id: str) -> LinkFacts:
        facts = self.cache.by_id(message_id)
        if facts is None:
            parsed = q.parse_uuid(message_id)
            found = [] if parsed is None else await self._fill([parsed], access)
            facts = found[0] if found else None
        if facts is None or not access.covers(facts.workspace_id):
            raise not_found("message")
        if facts.deleted_reason is not None:
            raise gone(facts.deleted_reason)
        return facts

    async def by_ids(self, access: Access, message_ids: list[str]) -> dict[str, LinkRecord | None]:
        found: dict[str, LinkFacts] = {}
        missing: list[uuid.UUID] = []
        for message_id in message_ids:
            facts = self.cache.by_id(message_id)
            if facts is not None:
                if access.covers(facts.workspace_id):
                    found[message_id] = facts
                continue
            parsed = q.parse_uuid(message_id)
            if parsed is not None:
                missing.append(parsed)
        if missing:
            for facts in await self._fill(missing, access):
                found[facts.message_id] = facts
        hosts = await self.gong_hosts({f.workspace_id for f in found.values() if needs_gong_host(f)})
        answer: dict[str, LinkRecord | None] = {}
        for message_id in message_ids:
            # Ids are looked up by their canonical form; answer under the form the caller sent.
            parsed = q.parse_uuid(message_id)
            facts = found.get(message_id) or (found.get(str(parsed)) if parsed else None)
            if facts is None or facts.deleted_reason is not None:  # unknown, or a tombstone: no link
                answer[message_id] = None
            elif needs_gong_host(facts):
                answer[message_id] = self._record(facts, hosts.get(facts.workspace_id))
            else:
                answer[message_id] = await self.record(facts)
        return answer

    async def _fill(self, ids: list[uuid.UUID], access: Access) -> list[LinkFacts]:
        epoch = self.cache.epoch
        rows = await q.facts_by_ids(self._pool(), ids, access.workspace_filter())
        for facts in rows:
            self.cache.store(facts, epoch)
        return rows

    async def gong_hosts(self, workspaces: set[str]) -> dict[str, str | None]:
        hosts: dict[str, str | None] = {}
        unknown: list[str] = []
        for workspace_id in workspaces:
            cached = self.cache.gong_host(workspace_id)
            if is_unknown_host(cached):
                unknown.append(workspace_id)
            else:
                hosts[workspace_id] = cached if isinstance(cached, str) else None
        if unknown:
            epoch = self.cache.epoch
            fetched = await q.gong_hosts(self._pool(), unknown)
            for workspace_id in unknown:
                hosts[workspace_id] = fetched.get(workspace_id)
                self.cache.store_gong_host(workspace_id, hosts[workspace_id], epoch)
        return hosts

    async def gong_host(self, facts: LinkFacts) -> str | None:
        if not needs_gong_host(facts):
            return None
        return (await self.gong_hosts({facts.workspace_id}))[facts.workspace_id]

    async def record(self, facts: LinkFacts) -> LinkRecord:
        if needs_gong_host(facts):  # depends on the workspace's host too: not memoised
            return self._record(facts, await self.gong_host(facts))
        return self._memoised(facts)

    def _memoised(self, facts: LinkFacts) -> LinkRecord:
        memo = self.cache.resolved(facts)
        if isinstance(memo, RenderedLink):
            return memo.record
        if isinstance(memo, LinkRecord):
            return memo
        record = self._record(facts, None)
        self.cache.remember_resolved(facts, record)
        return record

    def _record(self, facts: LinkFacts, gong_host: str | None) -> LinkRecord:
        return link_record(facts.message_id, facts.source, facts.external_id, self.link(facts, gong_host))

    def link(self, facts: LinkFacts, gong_host: str | None) -> Link:
        return resolve_link(facts, self.allow, gong_host)

    async def message_page(
        self, flt: q.MessageFilter, after: KeysetCursor | None, limit: int
    ) -> tuple[list[MessageSummary], str | None]:
        """One keyset page of ``/v1/messages`` (also the first page a customer's answer embeds):
        its items, each with its link, and the cursor of the next page, if there is one."""
        rows = await q.list_messages(self.pool, flt, after, limit + 1)
        page = rows[:limit]
        facts = [q.facts_from_row(r) for r in page]
        hosts = await self.gong_hosts({f.workspace_id for f in facts if needs_gong_host(f)})
        items = [
            MessageSummary(
                id=f.message_id,
                workspace_id=f.workspace_id,
                source=f.source,
                external_id=f.external_id,
                title=r["title"],
                sent_at=r["sent_at"],
                channel_name=r["channel_name"],
                author=Author(name=r["author_name"], email=r["author_email"], id=r["author_id"]),
                customer_id=None if r["customer_id"] is None else str(r["customer_id"]),
                link=self.link(f, hosts.get(f.workspace_id)),
                customer_name=r["customer_name"],
                integration_id=r["integration_id"],
                duration_seconds=seconds_of(r["link_fields"].get("duration_seconds")),
            )
            for r, f in zip(page, facts, strict=True)
        ]
        cursor = encode_keyset_cursor(page[-1]["sent_at"], page[-1]["id"]) if len(rows) > limit else None
        return items, cursor
