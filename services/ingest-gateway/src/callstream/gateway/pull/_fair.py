"""Which fetched sync request takes a free slot: slots are shared fairly between provider hosts.

The work queue hands requests out in the order they came. When a slot frees, the worker may
fetch a few (``lookahead``) and park those of a host that already holds ``per_host`` slots: the
first request of a host under its share takes the slot. So the runs of one host (every Fathom
tenant in a Fathom outage, a dozen long backfills) cannot take every slot while a request of
another host waits. A host that is failing (``suspect``: its breaker is not closed or its last
request failed) has a share of one slot. When nothing else waits (the queue had no more, or
every parked request is of a busy healthy host), the oldest parked request takes the slot: a free
slot never idles. When every parked request is of a busy host and some host is failing, the
oldest of a failing host is given back (``spill``) to look further down the queue instead. A
parked request keeps its lease and takes the next slot its host may have. Runs already going are
not interrupted (a run waiting for its provider releases its slot by itself, see ``_http``).

Free of I/O: the worker fetches, parks, and starts what ``pick`` returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class FairShare(Generic[T]):
    per_host: int  # slots one host may hold while another host's request waits
    lookahead: int  # requests parked at most
    suspect: Callable[[str], bool] = lambda host: False  # a failing host: one slot
    running: Counter[str] = field(default_factory=Counter)
    parked: list[tuple[str, T]] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.parked) >= self.lookahead

    def park(self, host: str, item: T) -> None:
        self.parked.append((host, item))

    def pick(self, *, exhausted: bool) -> tuple[str, T] | None:
        """The oldest parked request of a host under its share; with ``exhausted`` (nothing else
        to wait for) the oldest of all. ``None``: fetch more first."""
        for i, (host, _) in enumerate(self.parked):
            if self.running[host] < (1 if self.suspect(host) else self.per_host):
                return self._take(i)
        if (exhausted or self.full) and self.parked:
            return self._take(0)
        return None

    def spill(self) -> T | None:
        """When parking is full and no parked request may go: the oldest of a failing host,
        given back so the slot can look further (``None``: none is failing)."""
        if not self.full:
            return None
        for i, (host, _) in enumerate(self.parked):
            if self.suspect(host):
                return self.parked.pop(i)[1]
        return None

    def done(self, host: str) -> None:
        self.running[host] -= 1
        if self.running[host] <= 0:
            del self.running[host]

    def drain(self) -> list[T]:
        items = [item for _, item in self.parked]
        self.parked.clear()
        return items

    def _take(self, i: int) -> tuple[str, T]:
        host, item = self.parked.pop(i)
        self.running[host] += 1
        return host, item


def slots_per_host(concurrency: int, configured: int) -> int:
    """``configured`` when set, else all slots but one (at least one)."""
    if configured > 0:
        return min(configured, concurrency)
    return max(1, concurrency - 1)
