"""One pull run: page through the provider, publish each page's calls, then checkpoint and report.

The page is the unit of progress. A page's calls are all stored in ``CALLS_RAW`` before the
checkpoint moves past it, so a run that dies mid-page repeats only that page on redelivery (its
calls get the same ``Nats-Msg-Id`` and JetStream drops them) and never fetches a completed page again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from callstream.contracts import CallsListed, Source, SyncProgress, SyncRequested, TimeWindow
from callstream.contracts.providers import PayloadRejected
from callstream.runtime import get_logger

from ._checkpoint import Checkpoint, CheckpointStore, Listing
from ._errors import CursorExpired, IntegrationErased, RunDeferred, RunFailed, RunPaused, RunWithdrawn
from ._fathom import FathomClient, RecordingGone
from ._gong import GongClient
from ._mappable import check_gong_bundle, fathom_meeting_id, skipped
from ._publish import Publisher, utcnow
from ._settings import PullSettings
from ._shapes import (
    NULL,
    GongCallFacts,
    fathom_recording_id,
    gong_bundle,
    gong_call_facts,
    private_call,
    raw_call,
    with_fields,
)

log = get_logger(__name__)

Item = tuple[str, bytes]  # (external id, provider bytes the normalizer can map: see ``_mappable``)
PageFetch = Callable[[str | None], Coroutine[Any, Any, tuple[Sequence[Item], str | None]]]  # cursor -> page


@dataclass
class Run:
    request: SyncRequested
    checkpoint: Checkpoint
    checkpoints: CheckpointStore
    publisher: Publisher
    settings: PullSettings
    stopping: asyncio.Event
    traceparent: str | None
    published: set[str] = field(default_factory=set)  # external ids this process published in this run
    # Asked once the run's time slice (``slice_seconds``) is over: do other requests wait for a
    # slot? Then the run checkpoints and gives its slot up (``RunPaused``). ``None``: never.
    others_wait: Callable[[], Awaitable[bool]] | None = None
    started: float = field(default_factory=time.monotonic)
    # A reconciling run's listing (``SyncRequested.reconcile``): every call id the provider listed
    # in the window, published as ``CallsListed`` once the whole window was read.
    listing: Listing | None = None
    # Asked at each page boundary: did the scheduler withdraw the run's request (cancelled)? Then
    # the run stops there (``RunWithdrawn``). ``None``: never asked.
    withdrawn: Callable[[], Awaitable[bool]] | None = None
    # Asked before each page (and listing) is published: the integration's status when it is no
    # longer one to pull (``disabled``, ``erased``, ``None`` for a row that is gone), else
    # ``active``. An erasure must not be followed by more of its calls. ``None``: never asked.
    integration_status: Callable[[], Awaitable[str | None]] | None = None

    def listed(self, external_id: str | None) -> None:
        """A call the provider listed; ``None``: one whose id could not be read (the listing is then
        incomplete: it can never tell which calls are gone)."""
        if self.listing is None:
            return
        if external_id is None:
            self.listing.complete = False
        elif external_id not in self._listed:
            self._listed.add(external_id)
            self.listing.ids.append(external_id)

    def __post_init__(self) -> None:
        self._listed: set[str] = set(self.listing.ids) if self.listing is not None else set()

    @property
    def source(self) -> Source:
        return self.request.provider

    def remaining(self) -> int | None:
        limit = self.request.limit
        return None if limit is None else max(0, limit - self.checkpoint.calls_published)

    async def check_integration(self) -> None:
        """Stop at this page boundary if the integration was disabled or erased meanwhile: the
        worker read its status once at the start, and a backfill runs for hours."""
        if self.integration_status is None:
            return
        try:
            status = await self.integration_status()
        except Exception as exc:  # the database slow or away: go on, ask again next page
            log.info("could not read the integration's status", error=type(exc).__name__)
            return
        if status in ("active", "reauth_required"):
            return  # reauth_required: the next provider call fails the run as before
        if status == "disabled":
            raise RunFailed("the integration was disabled while the run went on")
        raise IntegrationErased(self.request.run_id)

    async def publish_page(self, items: Sequence[Item], next_cursor: str | None) -> None:
        await self.check_integration()
        req = self.request
        now = utcnow()
        fresh = [(eid, data) for eid, data in items if eid not in self.published]
        room = self.remaining()
        if room is not None:
            fresh = fresh[:room]
        calls = [
            raw_call(
                source=req.provider,
                workspace_id=req.workspace_id,
                integration_id=req.integration_id,
                external_id=eid,
                payload=data,
                traceparent=self.traceparent,
                received_at=now,
                run_id=req.run_id,
            )
            for eid, data in fresh
        ]
        stored, already_received = await self.publisher.calls(req.provider, calls)
        self.published.update(eid for eid, _ in fresh)
        cp = self.checkpoint
        cp.pages += 1
        cp.calls_published += stored
        cp.calls_already_received += already_received
        cp.cursor = next_cursor
        await self.save()
        progress = SyncProgress(
            run_id=req.run_id,
            integration_id=req.integration_id,
            page=cp.pages,
            calls_published=cp.calls_published,
            calls_already_received=cp.calls_already_received,
            checkpoint=cp.encode(),
            at=utcnow(),
        )
        await self.publisher.event(req.provider, progress, self.traceparent)
        log.info(
            "pull page done",
            run_id=req.run_id,
            provider=req.provider,
            page=cp.pages,
            calls=stored,
            calls_published=cp.calls_published,
        )

    async def publish_listing(self) -> None:
        """After the whole window was read: ``CallsListed``, when the listing is complete."""
        listing, req, cp = self.listing, self.request, self.checkpoint
        if listing is not None:
            await self.check_integration()
        if listing is None or not listing.complete or cp.window_start is None or cp.window_end is None:
            if listing is not None:
                log.info("listing incomplete: no calls judged deleted", run_id=req.run_id)
            return
        await self.publisher.listing(
            CallsListed(
                run_id=req.run_id,
                integration_id=req.integration_id,
                workspace_id=req.workspace_id,
                source=req.provider,
                window=TimeWindow(start=cp.window_start, end=cp.window_end),
                listed_at=listing.started_at,
                external_ids=listing.ids,
                gone_external_ids=listing.gone,
            ),
            self.traceparent,
        )

    def skip(self, rejected: PayloadRejected, external_id: str | None = None) -> None:
        """Leave one call out of the page (the normalizer could never map it), logged and counted."""
        req = self.request
        skipped(req.provider, req.integration_id, req.run_id, rejected, external_id)

    async def save(self) -> None:
        try:
            if self.listing is not None:  # before the checkpoint: never a page done but not listed
                await self.checkpoints.save_listing(self.request.run_id, self.listing)
            await self.checkpoints.save(self.request.run_id, self.checkpoint)
        except Exception as exc:
            raise RunDeferred(
                f"could not save the checkpoint: {type(exc).__name__}", self.settings.redeliver_delay_seconds
            ) from None

    def check_stopping(self) -> None:
        if self.stopping.is_set():
            raise RunPaused("the gateway is stopping; another worker resumes from the checkpoint", 0.0)

    async def slice_over(self) -> bool:
        """A long run (not ``latest``: it is short by its limit) shares its slot: after
        ``slice_seconds`` it yields at its next page if other requests wait."""
        s = self.settings
        if self.others_wait is None or self.request.mode == "latest" or s.slice_seconds <= 0:
            return False
        if time.monotonic() - self.started < s.slice_seconds:
            return False
        try:
            if await self.others_wait():
                return True
        except Exception as exc:  # the broker slow to say: go on, ask again next page
            log.info("could not tell whether other requests wait", error=type(exc).__name__)
        self.started = time.monotonic()  # nobody waits: a new slice, asked again at its end
        return False

    async def pages(self, fetch: PageFetch) -> None:
        """Follow the cursor to the end (or the limit), restarting the window on an expired cursor.

        The next page is fetched while the current one is published (its cursor is known), so the
        provider and the broker work at the same time; the checkpoint still moves one completed
        page at a time."""
        cp = self.checkpoint
        ahead: asyncio.Task[tuple[Sequence[Item], str | None]] | None = None
        try:
            while True:
                self.check_stopping()
                if self.withdrawn is not None and await self.withdrawn():
                    raise RunWithdrawn(self.request.run_id)
                task, ahead = ahead or asyncio.create_task(fetch(cp.cursor)), None
                try:
                    items, next_cursor = await task
                except CursorExpired:
                    cp.restarts += 1
                    if cp.restarts > self.settings.expired_cursor_restarts:
                        raise RunFailed("the provider's page cursor kept expiring; the window is too large") from None
                    log.info(
                        "page cursor expired, restarting the window", run_id=self.request.run_id, restarts=cp.restarts
                    )
                    cp.cursor = None
                    continue
                room = self.remaining()
                more = next_cursor is not None and (room is None or room > len(items))
                yielding = more and await self.slice_over()  # asked before a page is fetched ahead
                if more and not yielding:
                    ahead = asyncio.create_task(fetch(next_cursor))
                await self.publish_page(items, next_cursor)
                if next_cursor is None or self.remaining() == 0:
                    return
                if yielding:
                    raise RunPaused("time slice over while other requests wait", self.settings.slice_yield_seconds)
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead


async def run_fathom(run: Run, client: FathomClient) -> None:
    cp = run.checkpoint

    async def fetch(cursor: str | None) -> tuple[Sequence[Item], str | None]:
        page = await client.meetings(cp.window_start, cp.window_end, cursor)
        items: list[Item] = []
        seen: set[int] = set()
        for meeting in page.meetings:
            recording_id: int | None = None
            try:
                if client.embed_content:  # the rule's decode reads the id too: one decode a meeting
                    recording_id = fathom_meeting_id(meeting)
                    data = bytes(meeting)
                    if recording_id in seen:
                        continue
                else:  # the transcript and summary are asked by id, then the whole is checked
                    recording_id = fathom_recording_id(meeting)
                    if recording_id in seen:
                        continue
                    try:
                        data = await client.with_content(meeting, recording_id)
                    except RecordingGone:
                        if run.listing is not None:  # a reconciliation: gone at Fathom
                            seen.add(recording_id)
                            run.listed(str(recording_id))
                            run.listing.gone.append(str(recording_id))
                            continue
                        data = with_fields(meeting, {"transcript": NULL, "default_summary": NULL})
                    fathom_meeting_id(data)
            except PayloadRejected as rejected:
                if recording_id is None:  # unmappable, but still listed when its id can be read
                    with contextlib.suppress(PayloadRejected):
                        recording_id = fathom_recording_id(meeting)
                run.listed(None if recording_id is None else str(recording_id))
                run.skip(rejected, None if recording_id is None else str(recording_id))
                continue
            seen.add(recording_id)
            run.listed(str(recording_id))
            items.append((str(recording_id), data))
        return items, page.next_cursor

    async def list_ids(cursor: str | None) -> tuple[list[str | None], str | None]:
        page = await client.meetings(cp.window_start, cp.window_end, cursor, ids_only=True)
        ids: list[str | None] = []
        for meeting in page.meetings:
            try:
                ids.append(str(fathom_recording_id(meeting)))
            except PayloadRejected:
                ids.append(None)
        return ids, page.next_cursor

    await _listed_twice(run, fetch, list_ids)


ListIds = Callable[[str | None], Coroutine[Any, Any, tuple[list[str | None], str | None]]]  # cursor -> ids


async def recheck_listing(run: Run, list_ids: ListIds) -> None:
    """Read the window a second time, ids only, into the listing; only a call both passes missed is
    taken for gone. Both providers page by an offset-like cursor (Fathom by page number,
    fathom.md §2.2): a call deleted while the window is read moves every later one up, and the one
    that crosses a page boundary is never listed. Checkpointed with the listing, so a resumed run
    goes on where it was."""
    listing, cp = run.listing, run.checkpoint
    if listing is None or not listing.complete:
        return
    while not listing.rechecked:
        run.check_stopping()
        try:
            ids, next_cursor = await list_ids(listing.recheck_cursor)
        except CursorExpired:
            cp.restarts += 1
            if cp.restarts > run.settings.expired_cursor_restarts:
                raise RunFailed("the provider's page cursor kept expiring; the window is too large") from None
            listing.recheck_cursor = None
            continue
        for external_id in ids:
            run.listed(external_id)
        listing.recheck_cursor = next_cursor
        listing.rechecked = next_cursor is None
        await run.save()


async def _listed_twice(run: Run, fetch: PageFetch, list_ids: ListIds) -> None:
    """The run's pages; for a reconciliation, then the second, ids-only pass and the listing."""
    listing = run.listing
    if listing is None or not listing.paged:  # a reconciliation resumed after its pages: not again
        await run.pages(fetch)
    if listing is not None:
        listing.paged = True
        await recheck_listing(run, list_ids)
        await run.publish_listing()


async def run_gong(run: Run, client: GongClient) -> None:
    start, end = run.checkpoint.window_start, run.checkpoint.window_end
    if start is None or end is None:
        raise RunFailed("a Gong run needs both ends of its window")

    async def fetch(cursor: str | None) -> tuple[Sequence[Item], str | None]:
        page = await client.calls(start, end, cursor)
        return await gong_items(run, client, page.calls), page.next_cursor

    async def list_ids(cursor: str | None) -> tuple[list[str | None], str | None]:
        page = await client.calls(start, end, cursor, ids_only=True)
        ids: list[str | None] = []
        for call in page.calls:
            try:
                ids.append(gong_call_facts(call).id)
            except PayloadRejected:
                ids.append(None)
        return ids, page.next_cursor

    await _listed_twice(run, fetch, list_ids)


async def gong_items(run: Run, client: GongClient, calls: Sequence[msgspec.Raw]) -> list[Item]:
    """Each call with its transcript, except private calls: Gong marks them ``isPrivate`` (visible
    to their participants only), so their transcript is never requested and what was said is
    left out of the call; the call itself (who, when, CRM context) is still published.

    A call without a readable id, or whose bundle the normalizer could never map, is skipped."""
    read: list[tuple[GongCallFacts, msgspec.Raw]] = []
    for call in calls:
        try:
            facts = gong_call_facts(call)
        except PayloadRejected as rejected:
            run.listed(None)
            run.skip(rejected)
            continue
        run.listed(facts.id)  # private calls too: hidden from some, not deleted
        read.append((facts, call))
    shared = [f.id for f, _ in read if not f.is_private]
    transcripts = await client.transcripts(shared) if shared else {}
    items: list[Item] = []
    for f, call in read:
        if f.is_private:
            data = gong_bundle(msgspec.Raw(private_call(call)), None)
        else:
            data = gong_bundle(call, transcripts.get(f.id))
        try:
            check_gong_bundle(data)
        except PayloadRejected as rejected:
            run.skip(rejected, f.id)
            continue
        items.append((f.id, data))
    return items
