"""A circuit breaker per provider host, so N tenants of one failing host cost one probe per interval.

``closed``: requests go; ``failures_to_open`` failures in a row open it. A failure is the host's:
refused or unreachable, a connect timeout, a 5xx. A read timeout or a dropped answer may be one
tenant's own doing (its huge meeting), so it counts only once a second account of the host saw
one too (``failed(account=...)``); what is local to the process or the tenant (a pool timeout, a
malformed header) never counts (``_http``).
``open``: no request goes; runs are released until ``open_until``. ``half_open``: the first run
that asks after ``open_until`` sends the one probe; the others are released while it is out. The
probe's success closes the breaker, its failure opens it again for twice as long (up to
``open_max_seconds``). A probe that never reports (its run was cancelled) is replaced after
``probe_timeout_seconds``. Any answer of the host other than 5xx counts as success: a 401 or 404
says the host is up (those fail the run, not the host), and a 429 is a pace, kept by the limits.

Why not a library: pybreaker, aiobreaker, purgatory and circuitbreaker wrap a call and raise when
open; the worker needs to ask *before* anything is spent (a pace, a quota) and to know *how long*
the host stays closed to it, so the run's release carries that delay, and it classifies answers
itself. Those are the whole state machine below; a clock is injected for the unit test.

One breaker per process and host; each replica finds out on its own (one probe per replica per
interval), which keeps the breaker free of I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from callstream.runtime import get_logger

log = get_logger(__name__)

State = Literal["closed", "open", "half_open"]
STATE_VALUE: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}
MIN_RELEASE_SECONDS = 1.0

BREAKER_STATE = Gauge(
    "callstream_gateway_pull_breaker_state",
    "Provider host circuit breaker: 0 closed, 1 half open (one probe out), 2 open",
    ["host"],
)
BREAKER_OPENED = Counter(
    "callstream_gateway_pull_breaker_opened_total", "Times a provider host's breaker opened", ["host"]
)


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what a breaker is kept per (no path, no credentials)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}"


@dataclass
class Breaker:
    host: str
    failures_to_open: int = 5
    open_seconds: float = 30.0
    open_max_seconds: float = 300.0
    probe_timeout_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    state: State = "closed"
    failures: int = 0  # in a row, while closed
    reopened: int = 0  # failed probes in a row: each doubles the time open
    open_until: float = 0.0
    probe_since: float | None = None
    slow_accounts: set[str] = field(default_factory=set)  # accounts that timed out, while closed

    def __post_init__(self) -> None:
        self._publish()

    def check(self) -> float | None:
        """``None``: the request may go (as the probe when half open). Otherwise the seconds
        until this host may be tried again; nothing is to be sent before then."""
        now = self.clock()
        if self.state == "closed":
            return None
        if self.state == "open":
            if now < self.open_until:
                return self.open_until - now
            self._move("half_open")
            self.probe_since = now
            return None  # this caller is the probe
        out_for = now - self.probe_since if self.probe_since is not None else self.probe_timeout_seconds
        if out_for >= self.probe_timeout_seconds:  # the probe was given up or lost: this caller probes
            self.probe_since = now
            return None
        return max(MIN_RELEASE_SECONDS, min(self.open_seconds, self.probe_timeout_seconds - out_for))

    @property
    def suspect(self) -> bool:
        """Failing, or failed last time: its runs get one slot until it answers again."""
        return self.state != "closed" or self._in_a_row() > 0

    def _in_a_row(self) -> int:
        """Failures in a row: the host's own, plus timeouts once two accounts or more saw them."""
        slow = len(self.slow_accounts)
        return self.failures + (slow if slow >= 2 else 0)

    def retry_in(self) -> float:
        """Seconds until the host may be tried (0 unless open); changes nothing."""
        return max(0.0, self.open_until - self.clock()) if self.state == "open" else 0.0

    def released(self) -> None:
        """The probe was not sent after all (its run was released or cancelled first): the next
        caller probes instead of waiting ``probe_timeout_seconds``."""
        if self.state == "half_open":
            self.probe_since = None

    def succeeded(self) -> None:
        if self.state != "closed":
            log.info("provider host answers again; breaker closed", host=self.host)
        self.failures, self.reopened, self.probe_since = 0, 0, None
        self.slow_accounts.clear()
        self._move("closed")

    def failed(self, account: str | None = None) -> None:
        """The host failed; with ``account``, a timeout that counts once per account."""
        now = self.clock()
        if self.state == "closed":
            if account is None:
                self.failures += 1
            else:
                self.slow_accounts.add(account)
            if self._in_a_row() >= self.failures_to_open:
                self._open(now)
        elif self.state == "half_open":
            self.reopened += 1
            self._open(now)
        # open: a request sent before it opened failed too; it tells nothing new

    def _open(self, now: float) -> None:
        seconds = min(self.open_max_seconds, self.open_seconds * 2.0 ** min(self.reopened, 30))
        self.open_until, self.probe_since = now + seconds, None
        self.slow_accounts.clear()
        log.warning("provider host failing; breaker open", host=self.host, seconds=seconds, failures=self.failures)
        BREAKER_OPENED.labels(self.host).inc()
        self._move("open")

    def _move(self, state: State) -> None:
        self.state = state
        self._publish()

    def _publish(self) -> None:
        BREAKER_STATE.labels(self.host).set(STATE_VALUE[self.state])


@dataclass
class BreakerRegistry:
    """The breakers of one process, by host, made on first use."""

    failures_to_open: int = 5
    open_seconds: float = 30.0
    open_max_seconds: float = 300.0
    probe_timeout_seconds: float = 60.0
    enabled: bool = True
    clock: Callable[[], float] = time.monotonic
    _hosts: dict[str, Breaker] = field(default_factory=dict)

    def for_url(self, url: str) -> Breaker | None:
        if not self.enabled:
            return None
        host = host_of(url)
        breaker = self._hosts.get(host)
        if breaker is None:
            breaker = self._hosts[host] = Breaker(
                host,
                self.failures_to_open,
                self.open_seconds,
                self.open_max_seconds,
                self.probe_timeout_seconds,
                self.clock,
            )
        return breaker

    def get(self, host: str) -> Breaker | None:
        """The breaker of a ``host_of`` key, if one was made."""
        return self._hosts.get(host)

    def states(self) -> dict[str, State]:
        return {host: b.state for host, b in self._hosts.items()}
