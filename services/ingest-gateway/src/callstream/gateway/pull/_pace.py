"""A provider account's short-window limit (Fathom 60 a minute, Gong 3 a second) kept by every
gateway replica together, in the JetStream KV bucket that already counts Gong's daily quota.

The pace is GCRA (the generic cell rate algorithm): one key per account and kind of request holds
the "theoretical arrival time", the moment the next request may go. A request reserves its moment
with a compare-and-set on the key's revision (``max(tat, now)``, then ``tat + interval``) and sleeps
until it. So the replicas share one even pace, one request per ``interval``, and no window of the
provider's length sees more than ``floor(window / interval) + 1 <= limit`` requests (the interval is
``window / (limit * margin)``), as the in-process limiter kept it for one replica.

It is cheap: each replica remembers the revision it last wrote and updates with it directly, so
an uncontended request costs one KV round trip; only a replica that lost the race reads the key.
Reservations of one process are taken one at a time, so its own runs do not race each other.

A wait longer than the run may hold its slot for (``hold``) releases the run instead, for that
long (``RunDeferred``), without reserving anything. When the bucket does not answer within
``timeout`` (a slow or absent broker), the replica paces alone at ``pace_fallback_share`` of the
limit: a few replicas doing so stay near the limit, and the provider's own 429 is still honoured.

Times are wall-clock seconds: replicas' clocks agree to milliseconds under NTP, well inside the
shortest interval (a third of a second for Gong).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from callstream.runtime import get_logger

from ._errors import RunDeferred

log = get_logger(__name__)

_UNSAFE = re.compile(r"[^-_A-Za-z0-9]")
CONTENDED_TRIES = 50
WARN_EVERY_SECONDS = 60.0


class PaceDeferred(RunDeferred):
    """The account's pace is taken for longer than a run may hold its slot: come back then."""


def pace_key(account: str, kind: str) -> str:
    return f"{_UNSAFE.sub('_', account)}.pace.{kind}"


@dataclass
class SharedPace:
    kv: KeyValue
    key: str
    interval: float  # seconds between two requests of the account, all replicas together
    hold: float  # the longest wait slept in the run's slot
    fallback: AsyncLimiter  # this replica alone, when the bucket does not answer
    timeout: float = 0.5
    clock: Callable[[], float] = time.time
    _revision: int | None = None  # of our last write: the optimistic first try
    _tat: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _warned_at: float = float("-inf")

    async def acquire(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                async with self._lock:
                    wait = await self._reserve()
        except RunDeferred:
            raise
        except Exception as exc:  # slow or away: pace alone rather than stall or overrun
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = now
                log.warning(
                    "shared pace unavailable; pacing this replica alone", key=self.key, error=type(exc).__name__
                )
            self._revision = None
            await self.fallback.acquire()
            return
        if wait > 0:
            await asyncio.sleep(wait)

    async def _reserve(self) -> float:
        """Reserve the next moment; the seconds to wait for it."""
        for _ in range(CONTENDED_TRIES):
            now = self.clock()
            start = max(self._tat, now)
            wait = start - now
            if wait > self.hold:  # what we last knew only grows: the bucket's word would be later still
                raise PaceDeferred(f"the account's pace is taken for {wait:.1f}s by other runs", wait)
            value = f"{start + self.interval:.6f}".encode()
            try:
                if self._revision is None:
                    self._revision = await self.kv.create(self.key, value)
                else:
                    self._revision = await self.kv.update(self.key, value, last=self._revision)
            except KeyWrongLastSequenceError:
                await self._load()  # another replica went first: read its reservation, try again
                continue
            self._tat = start + self.interval
            return wait
        raise PaceDeferred("the account's pace is too contended", self.interval * 4)

    async def _load(self) -> None:
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            self._tat, self._revision = 0.0, None
            return
        try:
            self._tat = float(entry.value or b"0")
        except ValueError:
            self._tat = 0.0
        self._revision = entry.revision
