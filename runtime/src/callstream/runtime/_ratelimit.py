"""A token bucket per client, for answering 429 with ``Retry-After`` instead of doing the work.

Used where one request from anyone costs a query, e.g. a bearer token nobody knows: each client
(its address) may spend ``burst`` at once and ``rate_per_second`` after that. Written here rather
than taken from ``aiolimiter`` because that library waits for capacity, and an answer must not
wait: it refuses at once and says when to come back. Clients are kept in a bounded LRU, so a flood
of addresses cannot fill memory (a forgotten client starts again with a full bucket).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_MAX_CLIENTS", "ClientRateLimit"]

DEFAULT_MAX_CLIENTS = 10_000


class ClientRateLimit:
    """``take(client)`` spends one unit, or returns the seconds until one is available (then
    nothing is spent); ``give_back(client)`` returns a unit spent on something that turned out not
    to count (e.g. a token that was found after all)."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be positive and burst at least 1")
        self._rate = rate_per_second
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (units, at)

    def _units(self, client: str, now: float) -> float:
        held = self._buckets.get(client)
        if held is None:
            return self._burst
        units, at = held
        return min(self._burst, units + (now - at) * self._rate)

    def take(self, client: str) -> int | None:
        """``None`` when a unit was spent; else whole seconds to wait (at least 1), for ``Retry-After``."""
        now = self._clock()
        units = self._units(client, now)
        if units < 1.0:
            return max(1, math.ceil((1.0 - units) / self._rate))
        self._buckets[client] = (units - 1.0, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return None

    def give_back(self, client: str) -> None:
        held = self._buckets.get(client)
        if held is not None:
            now = self._clock()
            self._buckets[client] = (min(self._burst, self._units(client, now) + 1.0), now)

    def __len__(self) -> int:
        return len(self._buckets)
