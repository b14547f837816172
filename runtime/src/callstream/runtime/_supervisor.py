"""One supervisor for every background worker of a process (consumers, relays, pull workers, due
loops, sweeps).

A worker is a coroutine function that runs until the service stops. When it raises, or returns
while the service still runs, the supervisor logs why, marks it down and starts it again after a
capped exponential backoff with jitter (tenacity's), woken at once by a stop. A worker therefore
needs no retry loop of its own around "the broker went away" or "my consumer was deleted": it
sets itself up (binds its consumer, opens its buckets) and lets anything unexpected escape.

Its state is visible: ``callstream_worker_up{service,worker}`` (1 running, 0 waiting to be
restarted), ``callstream_worker_restarts_total{service,worker}``, and the ``workers`` readiness
check, which fails naming every worker that has been down longer than the grace period. A worker
counts as down from its first failure until it has run ``healthy_after`` seconds without failing,
so one that crashes again and again right after each restart stays down, however often it restarts.
(A worker whose every attempt runs longer than ``healthy_after`` before failing looks healthy for a
moment each time; the service's other checks, the broker's and the database's, cover the usual
cause of that: a server that answers too slowly.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge
from tenacity import RetryCallState, wait_exponential_jitter

from ._logging import get_logger

log = get_logger(__name__)

WORKER_UP = Gauge(
    "callstream_worker_up", "1 while a background worker runs, 0 while it waits to be restarted", ["service", "worker"]
)
WORKER_RESTARTS = Counter(
    "callstream_worker_restarts_total", "Background worker restarts after a failure", ["service", "worker"]
)

DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_RESTART_MAX_SECONDS = 30.0
DEFAULT_HEALTHY_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How soon a failed worker starts again: ``first_delay`` doubling (with jitter) up to
    ``max_delay``; after ``healthy_after`` seconds of running the count starts afresh."""

    first_delay: float = 0.5
    max_delay: float = DEFAULT_RESTART_MAX_SECONDS
    healthy_after: float = DEFAULT_HEALTHY_AFTER_SECONDS

    def delay(self, failures: int) -> float:
        wait = wait_exponential_jitter(multiplier=self.first_delay, max=self.max_delay, jitter=self.first_delay)
        return float(wait(_attempt(failures)))


def _attempt(number: int) -> RetryCallState:
    """tenacity's wait strategies read only ``attempt_number`` of the state they are given."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, number)
    return state


def backoff_delay(attempt: int, first: float, cap: float) -> float:
    """The delay before the ``attempt``-th retry (1-based): ``first`` doubling, capped at ``cap``,
    without jitter. Used for nak delays, where JetStream's redelivery spreads retries anyway."""
    return float(min(cap, first * 2 ** max(0, attempt - 1)))


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking at once when ``stopping`` is set; True when it is."""
    if seconds > 0 and not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


class WorkerDown(Exception):
    """Raised by the readiness check: which workers have been down past the grace period."""


@dataclass(slots=True)
class WorkerState:
    name: str
    critical: bool = True
    up: bool = False
    restarts: int = 0
    down_since: float | None = None
    last_error: str | None = None
    _started_at: float = field(default=0.0, repr=False)


Worker = Callable[[Any], Awaitable[None]]


class Supervisor:
    """Runs workers as tasks, restarts them when they fail, and reports who is down."""

    def __init__(
        self,
        service: str,
        stopping: asyncio.Event,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.stopping = stopping
        self.grace_seconds = grace_seconds
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._workers: list[tuple[str, Worker]] = []
        self.states: dict[str, WorkerState] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, worker: Worker, *, critical: bool = True) -> None:
        """``critical=False`` for a worker the service answers without (the linker's cache feed,
        the gateway's pulls, which webhooks do not need): down, it is reported by readiness and
        metrics but does not take the service out of rotation."""
        if name in self.states:
            raise ValueError(f"a worker named {name!r} is already supervised")
        self._workers.append((name, worker))
        self.states[name] = WorkerState(name, critical)
        WORKER_UP.labels(self.service, name).set(0)
        WORKER_RESTARTS.labels(self.service, name)  # the series exists (at 0) before any restart

    def start(self, argument: Any) -> None:
        """Start every worker, each called with ``argument`` (the service's runtime)."""
        for name, worker in self._workers:
            self.tasks.append(asyncio.create_task(self._supervise(name, worker, argument), name=name))

    async def _supervise(self, name: str, worker: Worker, argument: Any) -> None:
        state = self.states[name]
        failures = 0
        while not self.stopping.is_set():
            self._mark_up(state)
            try:
                await worker(argument)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping.is_set():
                    log.info("worker ended with an error while stopping", worker=name, error=type(exc).__name__)
                    return
                failure: BaseException | None = exc
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
            else:
                if self.stopping.is_set():
                    return
                failure, error = None, "returned while the service runs"
            fresh = self._clock() - state._started_at >= self.policy.healthy_after
            failures = 1 if fresh else failures + 1
            if failures == 1:  # the traceback once per streak of failures, not once per restart
                log.error("worker failed", worker=name, error=error.split(":")[0], exc_info=failure)
            else:
                log.warning("worker failed again", worker=name, error=error)
            delay = self.policy.delay(failures)
            self._mark_down(state, error, fresh=fresh)
            log.warning("worker restarting", worker=name, failures=failures, in_seconds=round(delay, 2))
            if await wait_or_stop(self.stopping, delay):
                return
            state.restarts += 1
            WORKER_RESTARTS.labels(self.service, name).inc()

    def _mark_up(self, state: WorkerState) -> None:
        state.up = True
        state._started_at = self._clock()
        WORKER_UP.labels(self.service, state.name).set(1)

    def _mark_down(self, state: WorkerState, error: str, *, fresh: bool) -> None:
        state.up = False
        state.last_error = error
        if fresh or state.down_since is None:
            state.down_since = self._clock()
        WORKER_UP.labels(self.service, state.name).set(0)

    def _refresh(self) -> None:
        """A worker running ``healthy_after`` seconds since its restart is no longer down."""
        now = self._clock()
        for state in self.states.values():
            if state.up and state.down_since is not None and now - state._started_at >= self.policy.healthy_after:
                state.down_since = None

    def down(self) -> list[WorkerState]:
        """Workers down longer than the grace period."""
        self._refresh()
        now = self._clock()
        return [
            s for s in self.states.values() if s.down_since is not None and now - s.down_since >= self.grace_seconds
        ]

    def _describe(self, down: list[WorkerState]) -> str:
        """Names first (the readiness answer keeps only the start of a message), then how long and
        the error's type: its text may quote data, and readiness answers anyone who asks."""
        now = self._clock()
        names = ", ".join(s.name for s in down)
        details = "; ".join(
            f"{s.name} {now - (s.down_since or now):.0f} s, {(s.last_error or '').split(':')[0]}" for s in down
        )
        return f"{names} down for over {self.grace_seconds:g} s ({details})"

    async def check(self) -> None:
        """The readiness check: fails naming each critical worker down past the grace period."""
        down = [s for s in self.down() if s.critical]
        if down:
            raise WorkerDown(self._describe(down))

    async def degraded(self) -> str | None:
        """A readiness note (not a failure) naming each optional worker down past the grace period."""
        down = [s for s in self.down() if not s.critical]
        return self._describe(down) if down else None

    async def stop(self, grace_seconds: float) -> None:
        """After ``stopping`` is set: wait up to ``grace_seconds`` for the workers, then cancel."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for name in self.states:
            WORKER_UP.labels(self.service, name).set(0)


def periodic(job: Callable[[Any], Awaitable[None]], every_seconds: Callable[[], float] | float) -> Worker:
    """A worker that runs ``job(runtime)`` every ``every_seconds`` (the first run at once) until the
    service stops. A failing job fails the worker: the supervisor restarts it with backoff, and it
    shows as down while it keeps failing."""

    async def run(runtime: Any) -> None:
        while True:
            await job(runtime)
            seconds = every_seconds() if callable(every_seconds) else every_seconds
            if await wait_or_stop(runtime.stopping, seconds):
                return

    return run
