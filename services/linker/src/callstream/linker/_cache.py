"""An in-process cache of hot links, kept honest by ``MessageUpserted`` events.

Entries are dropped when an event for their message arrives (an ephemeral ordered consumer on the
MESSAGES stream, see :func:`follow_message_events`), which happens within milliseconds of the
normalizer's commit. Three rules keep a changed link from being served stale:

* the cache is used only while the event feed is live; when the NATS connection drops it is
  bypassed, and after a reconnect everything filled before is forgotten;
* a fill that raced with an event (read before, stored after) is not stored (``epoch``);
* a fill older than a version an event already announced (a lagging read replica) is not stored.

An event that carries its ``link_sources`` (the normalizer's do) also fills the entry for the
version it announces, so a freshly stored message is answered from memory without a read.
``max_age_seconds`` is a backstop only. Written here rather than taken from a library because the
invalidation rules above are the whole point and no LRU library knows them; the LRU itself is an
``OrderedDict``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from callstream.contracts import MESSAGES, LinkSources, MessageDeleted, MessageUpserted
from callstream.runtime import Broker, SpanKind, get_logger, tracing

from ._links import LinkFacts

log = get_logger(__name__)

Ident = tuple[str, str, str]  # (workspace_id, source, external_id)
_UNKNOWN_HOST = object()


@dataclass(frozen=True, slots=True)
class FeedState:
    live: bool
    generation: int  # changes whenever the feed may have missed events


class LinkCache:
    def __init__(
        self,
        max_entries: int,
        max_age_seconds: float,
        feed_state: Callable[[], FeedState],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._max_age = max_age_seconds
        self._feed_state = feed_state
        self._clock = clock
        self._by_id: OrderedDict[str, tuple[LinkFacts, float]] = OrderedDict()
        self._by_ident: dict[Ident, str] = {}
        self._hosts: dict[str, tuple[str | None, float]] = {}
        self._resolved: dict[str, object] = {}  # message id -> its resolved answer (pure function of the facts)
        self._announced: OrderedDict[str, int] = OrderedDict()  # message id -> newest version seen
        self._generation = 0
        self.epoch = 0  # bumped by every invalidation

    def __len__(self) -> int:
        return len(self._by_id)

    def _usable(self) -> bool:
        if self._max == 0:
            return False
        state = self._feed_state()
        if state.generation != self._generation:
            self.clear()
            self._generation = state.generation
        return state.live

    def clear(self) -> None:
        self._by_id.clear()
        self._by_ident.clear()
        self._resolved.clear()
        self._hosts.clear()
        self.epoch += 1

    # Reads
    def by_id(self, message_id: str) -> LinkFacts | None:
        if not self._usable():
            return None
        hit = self._by_id.get(message_id)
        if hit is None:
            return None
        facts, stored_at = hit
        if self._clock() - stored_at > self._max_age:
            self._drop(message_id)
            return None
        self._by_id.move_to_end(message_id)
        return facts

    def by_ident(self, workspace_id: str, source: str, external_id: str) -> LinkFacts | None:
        hit = self.hot((workspace_id, source, external_id))
        return None if hit is None else hit[0]

    def hot(self, ident: Ident) -> tuple[LinkFacts, object | None] | None:
        """:meth:`by_ident` and :meth:`resolved` in one step (the hot path pays per call): the
        facts and what was remembered for them."""
        message_id = self._by_ident.get(ident)
        if message_id is None:
            return None
        facts = self.by_id(message_id)
        return None if facts is None else (facts, self._resolved.get(message_id))

    def resolved(self, facts: LinkFacts) -> object | None:
        """What :meth:`remember_resolved` kept for exactly these facts (resolution is pure, so
        it is computed once per cached entry rather than once per request)."""
        hit = self._by_id.get(facts.message_id)
        return self._resolved.get(facts.message_id) if hit is not None and hit[0] is facts else None

    def remember_resolved(self, facts: LinkFacts, answer: object) -> None:
        hit = self._by_id.get(facts.message_id)
        if hit is not None and hit[0] is facts:
            self._resolved[facts.message_id] = answer

    def gong_host(self, workspace_id: str) -> object:
        """The cached host (or None for "none recorded"), else ``_UNKNOWN_HOST``."""
        if not self._usable():
            return _UNKNOWN_HOST
        hit = self._hosts.get(workspace_id)
        if hit is None or self._clock() - hit[1] > self._max_age:
            return _UNKNOWN_HOST
        return hit[0]

    # Fills: take ``epoch`` before reading the database, pass it back when storing.
    def store(self, facts: LinkFacts, epoch: int) -> None:
        if epoch != self.epoch or not self._usable():
            return
        if self._announced.get(facts.message_id, 0) > facts.version:
            return
        self._drop(facts.message_id)
        self._by_id[facts.message_id] = (facts, self._clock())
        self._by_ident[(facts.workspace_id, facts.source, facts.external_id)] = facts.message_id
        while len(self._by_id) > self._max:
            self._drop(next(iter(self._by_id)))

    def store_gong_host(self, workspace_id: str, host: str | None, epoch: int) -> None:
        if epoch != self.epoch or not self._usable():
            return
        if len(self._hosts) >= self._max:
            self._hosts.clear()
        self._hosts[workspace_id] = (host, self._clock())

    def announced_version(self, message_id: str) -> int:
        """The newest version an event announced for this message (0: none seen)."""
        return self._announced.get(message_id, 0)

    # Invalidation
    def invalidate(self, event: MessageUpserted) -> None:
        self.epoch += 1
        self._drop(event.message_id)
        self._announce(event.message_id, event.version)
        ident_owner = self._by_ident.get((event.workspace_id, event.source, event.external_id))
        if ident_owner is not None:
            self._drop(ident_owner)
        if event.source == "gong":
            # The message may have brought a new app host for its workspace.
            self._hosts.pop(event.workspace_id, None)
        if event.link_sources is not None:
            # The event carries what this version's link is resolved from: the next look-up is
            # answered from memory instead of reading the row it was just told about.
            self.store(facts_from_event(event, event.link_sources), self.epoch)

    def forget(self, message_id: str, ident: tuple[str, str, str] | None, version: int) -> None:
        """A message became a tombstone or was erased: nothing of it is answered from memory any
        more, and a read of an older version (a lagging read replica) is not cached again. An
        erased message's event has no provider identity: dropping it by id drops its ident too."""
        self.epoch += 1
        self._drop(message_id)
        self._announce(message_id, version)
        if ident is None:
            return
        ident_owner = self._by_ident.get(ident)
        if ident_owner is not None:
            self._drop(ident_owner)

    def _announce(self, message_id: str, version: int) -> None:
        self._announced[message_id] = max(version, self._announced.get(message_id, 0))
        self._announced.move_to_end(message_id)
        while len(self._announced) > max(self._max, 1):
            self._announced.popitem(last=False)

    def _drop(self, message_id: str) -> None:
        self._resolved.pop(message_id, None)
        hit = self._by_id.pop(message_id, None)
        if hit is not None:
            facts = hit[0]
            ident = (facts.workspace_id, facts.source, facts.external_id)
            if self._by_ident.get(ident) == message_id:
                del self._by_ident[ident]


def facts_from_event(event: MessageUpserted, sources: LinkSources) -> LinkFacts:
    return LinkFacts.from_metadata(
        message_id=event.message_id,
        workspace_id=event.workspace_id,
        source=event.source,
        external_id=event.external_id,
        version=event.version,
        metadata=msgspec.structs.asdict(sources),
    )


def is_unknown_host(value: object) -> bool:
    return value is _UNKNOWN_HOST


class MessageEventFeed:
    """Follows ``messages.upserted.>`` from now on with an ephemeral ordered consumer (nothing to
    clean up, no acks; nats-py re-creates it after a gap or reconnect, from the last sequence)."""

    SUBJECT = "messages.>"  # messages.upserted.> and messages.deleted.>

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._subscribed = False
        self._generation = 0
        self._reconnects_seen = -1
        self.cache: LinkCache | None = None
        self._decoder = msgspec.json.Decoder(MessageUpserted)
        self._deleted = msgspec.json.Decoder(MessageDeleted)
        self._state = FeedState(live=False, generation=0)

    def state(self) -> FeedState:
        """Asked on every cache read: answers with the same object while nothing changes."""
        live = bool(self._subscribed and self._broker.is_connected)
        if live:
            reconnects = int(self._broker.nc.stats.get("reconnects", 0))
            if reconnects != self._reconnects_seen:
                self._reconnects_seen = reconnects
                self._generation += 1
        if self._state.live is not live or self._state.generation != self._generation:
            self._state = FeedState(live=live, generation=self._generation)
        return self._state

    async def _on_message(self, msg: Msg) -> None:
        if msg.subject.startswith("messages.deleted."):
            try:
                deleted = self._deleted.decode(msg.data)
            except msgspec.DecodeError:
                log.warning("undecodable message event ignored", subject=msg.subject)
                return
            if self.cache is not None:  # the next look-up reads the tombstone (410) or finds none (erased: 404)
                ident = (
                    None if deleted.external_id is None else (deleted.workspace_id, deleted.source, deleted.external_id)
                )
                self.cache.forget(deleted.message_id, ident, deleted.version)
            return
        try:
            event = self._decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable message event ignored", subject=msg.subject)
            return
        if not tracing.on:
            if self.cache is not None:
                self.cache.invalidate(event)
            return
        # The last step of the message's trace: the link served from now on is the new one.
        with tracing.span(
            "linker cache invalidate",
            kind=SpanKind.CONSUMER,
            parent=tracing.extract(msg.headers),
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "callstream.workspace_id": event.workspace_id,
                "callstream.message_id": event.message_id,
                "callstream.message.external_id": event.external_id,
            },
        ):
            if self.cache is not None:
                self.cache.invalidate(event)

    async def run(self, stopping: asyncio.Event) -> None:
        """The worker: follow message events until the service stops. A failed subscribe (the
        MESSAGES stream may not exist yet: setup runs separately) escapes to the supervisor,
        which retries with backoff; the cache stays off meanwhile."""
        await self._broker.wait_connected()
        sub = await self._broker.js.subscribe(
            self.SUBJECT,
            stream=MESSAGES,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=2.0,
            cb=self._on_message,
        )
        if not stopping.is_set():
            self._generation += 1
            self._subscribed = True
            log.info("following message events for the link cache")
        try:
            await stopping.wait()
        finally:
            self._subscribed = False
            self._generation += 1
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe failed", error=type(exc).__name__)
