"""What both fakes share: fault knobs, fixed-window rate limits, a log of the requests served."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

Clock = Callable[[], float]


@dataclass
class Faults:
    """Knobs a test turns while the fake runs (also settable over HTTP at ``POST /_fake/faults``)."""

    fail_next: int = 0  # answer the next N API requests with ``fail_status``
    fail_status: int = 503
    delay_seconds: float = 0.0  # every API request waits this long before answering
    limits_enabled: bool = True
    expire_next_cursor: int = 0  # the next N requests that carry a cursor get "cursor has expired"
    fail_next_cursor: int = 0  # the next N list requests that carry a cursor (page 2 on) get ``fail_status``

    def take_failure(self) -> int | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_status
        return None

    def take_cursor_failure(self) -> int | None:
        if self.fail_next_cursor > 0:
            self.fail_next_cursor -= 1
            return self.fail_status
        return None

    def take_cursor_expiry(self) -> bool:
        if self.expire_next_cursor > 0:
            self.expire_next_cursor -= 1
            return True
        return False

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if not hasattr(self, name):
                raise ValueError(f"unknown fault knob {name!r}")
            setattr(self, name, type(getattr(self, name))(value))


class FixedWindow:
    """``limit`` requests per window of ``seconds``; a window opens with the first request after
    the previous one closed (what ``RateLimit-Reset`` "time remaining in the current window" implies)."""

    def __init__(self, limit: int, seconds: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self._clock = clock
        self._opened = -1e18
        self._used = 0

    def _roll(self) -> float:
        now = self._clock()
        if now - self._opened >= self.seconds:
            self._opened, self._used = now, 0
        return now

    def reset_in(self) -> float:
        now = self._roll()
        return max(0.0, self._opened + self.seconds - now)

    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self._used)

    def take(self) -> bool:
        self._roll()
        if self._used >= self.limit:
            return False
        self._used += 1
        return True


@dataclass(frozen=True, slots=True)
class Served:
    at: float
    method: str
    path: str
    status: int
    account: str | None = None
    heavy: bool = False
    body: Any = None


@dataclass
class RequestLog:
    entries: list[Served] = field(default_factory=list)

    def add(self, entry: Served) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        self.entries.clear()

    def api(self) -> list[Served]:
        """Requests to the provider API (not the fake's own admin routes)."""
        return [e for e in self.entries if not e.path.startswith("/_fake")]

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "at": e.at,
                "method": e.method,
                "path": e.path,
                "status": e.status,
                "account": e.account,
                "heavy": e.heavy,
                "detail": e.body,
            }
            for e in self.api()
        ]


def encode_cursor(state: dict[str, Any]) -> str:
    return base64.b64encode(msgspec.json.encode(state)).decode()


def decode_cursor(cursor: str) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(base64.b64decode(cursor.encode(), validate=True))
    except (ValueError, msgspec.DecodeError):
        return None
    return value if isinstance(value, dict) else None
