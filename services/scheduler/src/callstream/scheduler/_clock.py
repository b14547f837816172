"""Where the scheduler's "now" comes from. Everything time-dependent (the due loop, windows,
backoff, stale runs, retention) asks a :class:`Clock`, so tests can drive hours in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
