"""The consumer loop's bounds, with a scripted fetch and a writer that finishes when told: how many
batches it holds in memory and writes at once, behind and caught up, and that it stops cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from callstream.normalizer._consumer import BatchResult, Prepared, write_batches
from callstream.normalizer._pull import Pulled
from callstream.normalizer._settings import Settings

SETTINGS = Settings.model_construct(batch_size=10, store_concurrency=3, fetch_max_bytes=1_000_000)


class Writer:
    """Counts batches from ``prepare`` (mapped, in memory) until their ``store`` finishes."""

    def __init__(self, stopping: asyncio.Event, stop_after: int) -> None:
        self.stopping = stopping
        self.stop_after = stop_after
        self.held = self.writing = 0
        self.most_held = self.most_writing = 0
        self.stored: list[int] = []

    async def prepare(self, msgs: Sequence[Any]) -> Prepared:
        if msgs:  # an empty fetch maps to nothing and is never written
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        return Prepared([(m, m) for m in msgs])  # type: ignore[misc]

    async def store(self, prepared: Prepared) -> BatchResult:
        self.writing += 1
        self.most_writing = max(self.most_writing, self.writing)
        await asyncio.sleep(0.01)  # the transaction: long enough for the loop to run ahead if it would
        self.writing -= 1
        self.held -= 1
        self.stored.append(len(prepared.mappable))
        if len(self.stored) == self.stop_after:
            self.stopping.set()
        return BatchResult(stored=len(prepared.mappable))


def fetches(sizes: list[int]) -> Any:
    """Batches of these many 1-byte calls, whatever the bytes asked for."""
    remaining = iter(sizes)

    async def fetch(max_bytes: int) -> Pulled:
        await asyncio.sleep(0)
        n = next(remaining, 0)
        return Pulled(list(range(n)), n)  # type: ignore[arg-type]

    return fetch


async def _never() -> None:
    raise AssertionError("no transient failure was scripted")


async def test_while_behind_it_holds_no_more_batches_than_it_writes_at_once() -> None:
    stopping = asyncio.Event()
    writer = Writer(stopping, stop_after=12)
    await asyncio.wait_for(write_batches(fetches([10] * 12), writer, SETTINGS, stopping, _never), 5)
    assert writer.stored == [10] * 12
    assert writer.most_writing == 3
    assert writer.most_held == 3  # none mapped ahead of a free slot


async def test_caught_up_it_writes_one_at_a_time_and_maps_the_next_meanwhile() -> None:
    stopping = asyncio.Event()
    writer = Writer(stopping, stop_after=6)
    await asyncio.wait_for(write_batches(fetches([4] * 6), writer, SETTINGS, stopping, _never), 5)
    assert writer.stored == [4] * 6
    assert writer.most_writing == 1
    assert writer.most_held == 2


async def test_a_stop_while_waiting_for_a_slot_fetches_nothing_more_and_finishes_what_it_writes() -> None:
    stopping = asyncio.Event()
    writer = Writer(stopping, stop_after=1)
    sizes = [10] * 50
    fetch = fetches(sizes)
    calls = [0]

    async def counted(max_bytes: int) -> Pulled:
        calls[0] += 1
        return await fetch(max_bytes)

    await asyncio.wait_for(write_batches(counted, writer, SETTINGS, stopping, _never), 5)
    assert calls[0] == 3  # three slots filled before the first commit set the stop
    assert writer.stored == [10, 10, 10]  # the ones being written were finished, not dropped
    assert writer.held == 0


async def test_after_a_transient_failure_it_waits_for_the_database_before_fetching_more() -> None:
    stopping = asyncio.Event()
    events: list[str] = []

    class Failing(Writer):
        async def store(self, prepared: Prepared) -> BatchResult:
            await super().store(prepared)
            events.append("stored")
            return BatchResult(retried=len(prepared.mappable))  # the database went away: nak'd

    writer = Failing(stopping, stop_after=2)
    fetch = fetches([4, 4])

    async def fetch_logged(max_bytes: int) -> Pulled:
        events.append("fetch")
        return await fetch(max_bytes)

    async def database_back() -> None:
        events.append("database back")

    await asyncio.wait_for(write_batches(fetch_logged, writer, SETTINGS, stopping, database_back), 5)
    # The second batch was fetched while the first was written; nothing more until the database is back.
    assert events[:4] == ["fetch", "fetch", "stored", "database back"]
    assert events.count("stored") == 2
