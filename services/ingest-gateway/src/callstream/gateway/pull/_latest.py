"""A Gong ``latest`` run: the newest N calls.

Gong lists calls by start time inside a window and has no "newest first", so the run walks back
in bands from the moment it first started (``[now-1d, now)``, ``[now-7d, now-1d)``, ...) and keeps
the newest N calls it has seen, until a band ends with N in hand. Then it fetches their
transcripts and publishes them as one page.

It checkpoints after every page it reads: the band, the band's next cursor and the newest calls so
far (start times and ids only, so the checkpoint stays small whatever the calls weigh). A run
resumed elsewhere goes on from that page and never reads a completed one again; the candidates
whose bytes it did not fetch itself are fetched by id (one request per 100) before publishing.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime

import msgspec

from callstream.contracts.providers import PayloadRejected

from ._checkpoint import LatestCandidate
from ._errors import CursorExpired, RunFailed
from ._gong import GongClient
from ._runs import Run, gong_items
from ._shapes import gong_call_facts
from ._windows import latest_bands


async def run_gong_latest(run: Run, client: GongClient, now: datetime, oldest: datetime, limit: int) -> None:
    cp = run.checkpoint
    if cp.window_end is None:
        cp.window_end = now  # the bands stay where they were when the run resumes
    bands = latest_bands(cp.window_end, oldest)
    if cp.band >= len(bands) and cp.pages > 0:
        return  # published before a crash that came ahead of the run's end: nothing left to do
    newest = [(c.started, c.id) for c in cp.candidates]  # a min-heap of (started, id)
    heapq.heapify(newest)
    held = {cid for _, cid in newest}
    data: dict[str, bytes] = {}  # the bytes of the candidates this process fetched
    while cp.band < len(bands):
        run.check_stopping()
        start, end = bands[cp.band]
        try:
            page = await client.calls(start, end, cp.cursor)
        except CursorExpired:
            cp.restarts += 1
            if cp.restarts > run.settings.expired_cursor_restarts:
                raise RunFailed("the provider's page cursor kept expiring; the window is too large") from None
            cp.cursor = None  # read the band again from its start (``held`` keeps a call from counting twice)
            continue
        for call in page.calls:
            try:
                facts = gong_call_facts(call)
            except PayloadRejected as rejected:  # no id to rank or ask it by: never one of the newest
                run.skip(rejected)
                continue
            entry = (_started(facts.started, start), facts.id)
            if facts.id in held or (len(newest) >= limit and entry <= newest[0]):
                continue
            if len(newest) >= limit:
                _, dropped = heapq.heapreplace(newest, entry)
                held.discard(dropped)
                data.pop(dropped, None)
            else:
                heapq.heappush(newest, entry)
            held.add(facts.id)
            data[facts.id] = bytes(call)
        if page.next_cursor is not None:
            cp.cursor = page.next_cursor
        else:  # the band is done: every older band holds only older calls
            cp.cursor = None
            cp.band = len(bands) if len(newest) >= limit else cp.band + 1
        cp.candidates = [LatestCandidate(started, cid) for started, cid in newest]
        await run.save()
    chosen = [cid for _, cid in sorted(newest, reverse=True)]
    missing = [cid for cid in chosen if cid not in data]
    if missing:
        data.update((cid, bytes(raw)) for cid, raw in (await client.calls_by_id(missing)).items())
    calls = [msgspec.Raw(data[cid]) for cid in chosen if cid in data]  # a call deleted meanwhile is left out
    items = await gong_items(run, client, calls)
    cp.candidates = []  # saved with the published page: the events that carry the checkpoint stay small
    await run.publish_page(items, None)


def _started(value: str | None, fallback: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if value else fallback
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
