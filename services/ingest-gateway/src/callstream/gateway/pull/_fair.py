"""Which fetched sync request takes a free slot: slots are shared fairly between integrations,
and between provider hosts.

An integration holds one slot while another integration's request waits (``per_key``): its
second run (a "latest" beside its backfill) goes when nothing else waits. Long runs share their
slot over time: a backfill gives it up after a time slice when requests wait (``_runs``), so
four long backfills of four tenants of one host never keep a fifth tenant's "latest 5" waiting
until one of them ends.

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
    per_key: int = 1  # slots one integration may hold while another's request waits
    keys: dict[int, str] = field(default_factory=dict)  # id(item) -> its integration (fairness key)
    by_key: Counter[str] = field(default_factory=Counter)

    @property
    def full(self) -> bool:
        return len(self.parked) >= self.lookahead

    def park(self, host: str, item: T, key: str | None = None) -> None:
        self.parked.append((host, item))
        if key is not None:
            self.keys[id(item)] = key

    def pick(self, *, exhausted: bool) -> tuple[str, T] | None:
        """The oldest parked request of a host under its share; with ``exhausted`` (nothing else
        to wait for) the oldest of all. ``None``: fetch more first."""
        for i, (host, item) in enumerate(self.parked):
            key = self.keys.get(id(item))
            if key is not None and self.by_key[key] >= self.per_key:
                continue
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
                item = self.parked.pop(i)[1]
                self.keys.pop(id(item), None)
                return item
        return None

    def done(self, host: str, item: T | None = None) -> None:
        self.running[host] -= 1
        if self.running[host] <= 0:
            del self.running[host]
        key = self.keys.pop(id(item), None) if item is not None else None
        if key is not None:
            self.by_key[key] -= 1
            if self.by_key[key] <= 0:
                del self.by_key[key]

    def drain(self) -> list[T]:
        items = [item for _, item in self.parked]
        self.parked.clear()
        for item in items:
            self.keys.pop(id(item), None)
        return items

    def take_back(self, keep: Callable[[T], bool]) -> list[T]:
        """The parked requests ``keep`` refuses, taken out (to be given back)."""
        out = [item for _, item in self.parked if not keep(item)]
        self.parked = [(h, item) for h, item in self.parked if keep(item)]
        for item in out:
            self.keys.pop(id(item), None)
        return out

    def _take(self, i: int) -> tuple[str, T]:
        host, item = self.parked.pop(i)
        self.running[host] += 1
        key = self.keys.get(id(item))
        if key is not None:
            self.by_key[key] += 1
        return host, item


def slots_per_host(concurrency: int, configured: int) -> int:
    """``configured`` when set, else all slots but one (at least one)."""
    if configured > 0:
        return min(configured, concurrency)
    return max(1, concurrency - 1)
