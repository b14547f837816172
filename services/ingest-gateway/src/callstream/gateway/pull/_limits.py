"""Proactive rate limits: one set of limiters per provider account, shared by every run (several
integrations can use one Fathom account or one Gong company). With a ``QuotaStore`` (what the
gateway runs) both are kept with every other replica in its JetStream KV bucket: the short windows
as a shared pace (``_pace``), Gong's daily quota as a shared count (``_quota``). Without one (unit
tests, a lone process) they are limiters of this process only, as below.

aiolimiter is a leaky bucket that allows a burst of its capacity. Providers count requests per
window (Fathom 60 per minute, Gong 3 per second and 10,000 per day). A bucket of capacity ``c``
leaking ``r`` per second lets at most ``c + floor(r·W)`` requests into any window ``W``; with
``r = (L·margin - c + 1)/W`` that is at most ``L·margin + 1 ≤ L``: a capacity of one for the short
windows (an even pace), half the quota for the daily one (a burst, then an even pace).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiolimiter import AsyncLimiter

from ._pace import SharedPace, pace_key
from ._quota import DailyQuota, QuotaStore
from ._settings import PullSettings


class Limiter(Protocol):
    async def acquire(self) -> None: ...


DAY_SECONDS = 86_400.0


def window_limiter(limit: float, window_seconds: float, margin: float, *, capacity: float = 1.0) -> AsyncLimiter:
    allowed = limit * margin
    capacity = min(capacity, max(allowed, 1.0))
    leak_per_second = max(allowed - capacity + 1.0, 1e-9) / window_seconds
    return AsyncLimiter(capacity, capacity / leak_per_second)


@dataclass
class AccountLimits:
    """The limiters of one provider account. ``heavy`` ones are taken first (they are the scarcer)."""

    every: Sequence[Limiter | AsyncLimiter] = ()
    heavy: Sequence[Limiter | AsyncLimiter] = ()
    daily: DailyQuota | None = None  # counted with the other replicas; taken last, just before sending

    async def acquire(self, *, heavy: bool = False) -> None:
        for limiter in self.heavy if heavy else ():
            await limiter.acquire()
        for limiter in self.every:
            await limiter.acquire()
        if self.daily is not None:
            await self.daily.take()


def account_key(provider: str, *parts: str | None) -> str:
    """An account's key without its secret: a digest of what identifies it."""
    digest = hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()[:24]
    return f"{provider}:{digest}"


@dataclass
class LimiterRegistry:
    settings: PullSettings
    quotas: QuotaStore | None = None
    _accounts: dict[str, AccountLimits] = field(default_factory=dict)

    def window(self, key: str, kind: str, limit: float, window_seconds: float) -> Limiter | AsyncLimiter:
        """One short window of an account: shared with the other replicas when the bucket is there."""
        s = self.settings
        if self.quotas is None:
            return window_limiter(limit, window_seconds, s.limit_margin)
        interval = window_seconds / max(limit * s.limit_margin, 1e-9)
        return SharedPace(
            self.quotas.kv,
            pace_key(key, kind),
            interval,
            # a few of the account's own intervals are the run's work at the provider's pace
            hold=max(s.hold_wait_seconds, 4 * interval),
            fallback=window_limiter(limit, window_seconds, s.limit_margin * s.pace_fallback_share),
            timeout=s.pace_kv_timeout_seconds,
        )

    def fathom(self, key: str) -> AccountLimits:
        if not self.settings.limits_enabled:
            return AccountLimits()
        if key not in self._accounts:
            s = self.settings
            self._accounts[key] = AccountLimits(
                every=[self.window(key, "every", s.fathom_requests_per_window, s.fathom_window_seconds)],
                heavy=[self.window(key, "heavy", s.fathom_heavy_per_window, s.fathom_window_seconds)],
            )
        return self._accounts[key]

    def gong(self, key: str) -> AccountLimits:
        if not self.settings.limits_enabled:
            return AccountLimits()
        if key not in self._accounts:
            s = self.settings
            per_second = self.window(key, "second", s.gong_requests_per_second, 1.0)
            if self.quotas is not None:
                allowed = max(1, int(s.gong_requests_per_day * s.limit_margin))
                quota = self.quotas.daily(key, allowed, retry_delay=s.redeliver_delay_seconds)
                self._accounts[key] = AccountLimits(every=[per_second], daily=quota)
            else:
                daily = s.gong_requests_per_day * s.limit_margin
                self._accounts[key] = AccountLimits(
                    every=[
                        per_second,
                        window_limiter(s.gong_requests_per_day, DAY_SECONDS, s.limit_margin, capacity=daily / 2),
                    ]
                )
        return self._accounts[key]
