"""The consumer loop's byte budget (``CALLSTREAM_NORMALIZER_FETCH_MAX_BYTES``), with a scripted
JetStream that hands out raw calls as a pull request with ``max_bytes`` does (the real server's
behaviour is kept by tests/integration/test_normalizer_pull.py): raw calls fetched and not yet
written never hold more bytes than the budget, and one larger than the budget is written alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from callstream.normalizer._consumer import BatchResult, Prepared, write_batches
from callstream.normalizer._pull import Pulled
from callstream.normalizer._settings import Settings

BUDGET = 1_000_000
SETTINGS = Settings.model_construct(batch_size=10, store_concurrency=3, fetch_max_bytes=BUDGET)


class Server:
    """Pending raw calls (each one an int: its size), handed out in order within ``max_bytes``; the
    server stops before a call that would not fit, and says so when it is the first."""

    def __init__(self, sizes: list[int]) -> None:
        self.pending = list(sizes)
        self.asked: list[int] = []

    async def fetch(self, max_bytes: int) -> Pulled:
        await asyncio.sleep(0)
        self.asked.append(max_bytes)
        batch = SETTINGS.batch_size if max_bytes else 1
        taken: list[int] = []
        while self.pending and len(taken) < batch:
            if max_bytes and sum(taken) + self.pending[0] > max_bytes:
                return Pulled(taken, sum(taken), full=bool(taken), oversized=not taken)  # type: ignore[arg-type]
            taken.append(self.pending.pop(0))
        return Pulled(taken, sum(taken), full=len(taken) == batch)  # type: ignore[arg-type]


class Writer:
    """Tracks the bytes of the raw calls it holds, from ``prepare`` until their ``store`` ends."""

    def __init__(self, stopping: asyncio.Event, total: int) -> None:
        self.stopping = stopping
        self.total = total
        self.held: list[int] = []
        self.most_bytes = 0
        self.alongside: dict[int, list[int]] = {}  # each call: what else was held with it
        self.stored = 0

    async def prepare(self, msgs: Sequence[Any]) -> Prepared:
        self.held.extend(msgs)
        self.most_bytes = max(self.most_bytes, sum(self.held))
        for size in self.held:
            self.alongside.setdefault(size, []).extend(s for s in self.held if s != size)
        return Prepared([(m, m) for m in msgs])

    async def store(self, prepared: Prepared) -> BatchResult:
        await asyncio.sleep(0.005)
        for msg, _ in prepared.mappable:
            self.held.remove(msg)
        self.stored += len(prepared.mappable)
        if self.stored == self.total:
            self.stopping.set()
        return BatchResult(stored=len(prepared.mappable))


async def _never() -> None:
    raise AssertionError("no transient failure was scripted")


async def _run(sizes: list[int]) -> tuple[Server, Writer]:
    stopping = asyncio.Event()
    server, writer = Server(sizes), Writer(stopping, len(sizes))
    await asyncio.wait_for(write_batches(server.fetch, writer, SETTINGS, stopping, _never), 5)
    assert writer.stored == len(sizes)
    assert writer.held == []
    return server, writer


async def test_large_calls_in_flight_never_hold_more_than_the_budget() -> None:
    sizes = [400_000 + i for i in range(8)] + list(range(1, 21)) + [300_000 + i for i in range(8)]
    server, writer = await _run(sizes)
    assert writer.most_bytes <= BUDGET
    assert writer.most_bytes > BUDGET // 2  # and several are written at once where they fit
    assert 0 not in server.asked  # none larger than the budget: never one alone


async def test_a_call_larger_than_the_budget_is_written_alone_and_the_rest_goes_on() -> None:
    huge = 2 * BUDGET
    sizes = [*range(1, 31), huge, *range(31, 61)]
    server, writer = await _run(sizes)
    assert writer.alongside[huge] == []  # nothing else in memory with it
    assert server.asked.count(0) == 1  # fetched alone, once
    assert writer.most_bytes == huge


async def test_small_calls_are_never_limited_by_the_budget() -> None:
    """20 KB calls: full batches, each asked with the whole budget less what is being written."""
    sizes = [20_000] * 100
    server, writer = await _run(sizes)
    assert all(asked >= BUDGET - 3 * 10 * 20_000 for asked in server.asked)
    assert writer.most_bytes <= 3 * 10 * 20_000
