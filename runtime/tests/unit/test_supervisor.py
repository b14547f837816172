"""The supervisor's rules, on real asyncio tasks: restart with capped backoff, worker state in
metrics and readiness, a stop that wakes every wait. (The same rules on real servers and service
processes: tests/faults/test_workers_come_back.py.)"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from callstream.runtime import RestartPolicy, Supervisor, WorkerDown, backoff_delay, periodic

FAST = RestartPolicy(first_delay=0.01, max_delay=0.05, healthy_after=0.3)


def _value(name: str, service: str, worker: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "worker": worker})


async def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_failing_worker_is_restarted_and_counted() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor("unit-restart", stopping, grace_seconds=60, policy=FAST)
    runs: list[int] = []

    async def flaky(_: object) -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise ConnectionError("broker away")
        await stopping.wait()

    supervisor.add("flaky", flaky)
    supervisor.start(SimpleNamespace(stopping=stopping))
    await _until(lambda: len(runs) == 3)
    assert supervisor.states["flaky"].restarts == 2
    assert _value("callstream_worker_restarts_total", "unit-restart", "flaky") == 2
    assert _value("callstream_worker_up", "unit-restart", "flaky") == 1
    stopping.set()
    await supervisor.stop(1.0)
    assert _value("callstream_worker_up", "unit-restart", "flaky") == 0


async def test_a_worker_that_returns_early_is_restarted() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor("unit-return", stopping, policy=FAST)
    runs: list[int] = []

    async def returns(_: object) -> None:
        runs.append(1)

    supervisor.add("returns", returns)
    supervisor.start(SimpleNamespace(stopping=stopping))
    await _until(lambda: len(runs) >= 3)
    assert supervisor.states["returns"].last_error == "returned while the service runs"
    stopping.set()
    await supervisor.stop(1.0)


async def test_readiness_names_a_worker_down_past_the_grace_and_clears_when_it_recovers() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor("unit-ready", stopping, grace_seconds=0.2, policy=FAST)
    broken = asyncio.Event()
    broken.set()

    async def consumer(_: object) -> None:
        if broken.is_set():
            raise TimeoutError("consumer deleted")
        await stopping.wait()

    async def healthy(_: object) -> None:
        await stopping.wait()

    supervisor.add("raw-calls", consumer)
    supervisor.add("relay", healthy)
    supervisor.start(SimpleNamespace(stopping=stopping))
    await supervisor.check()  # down, but not yet for the grace period
    await _until(lambda: supervisor.states["raw-calls"].restarts >= 2)  # (the first traceback is slow to print)
    await asyncio.sleep(0.25)
    with pytest.raises(WorkerDown) as down:
        await supervisor.check()
    assert "raw-calls down for" in str(down.value)
    assert "TimeoutError" in str(down.value)
    assert "consumer deleted" not in str(down.value)  # error text may quote data: readiness is public
    assert "relay" not in str(down.value)
    # Crash-looping keeps it down however often it restarts; running healthy_after clears it.
    broken.clear()
    await _until(lambda: supervisor.states["raw-calls"].up)
    with pytest.raises(WorkerDown):
        await supervisor.check()
    await asyncio.sleep(FAST.healthy_after + 0.05)
    await supervisor.check()
    stopping.set()
    await supervisor.stop(1.0)


async def test_a_stop_wakes_a_worker_waiting_for_its_restart() -> None:
    stopping = asyncio.Event()
    slow = RestartPolicy(first_delay=30.0, max_delay=30.0)
    supervisor = Supervisor("unit-stop", stopping, policy=slow)

    async def fails(_: object) -> None:
        raise RuntimeError("boom")

    supervisor.add("fails", fails)
    supervisor.start(SimpleNamespace(stopping=stopping))
    await _until(lambda: not supervisor.states["fails"].up)
    started = time.monotonic()
    stopping.set()
    await supervisor.stop(5.0)
    assert time.monotonic() - started < 1.0
    assert all(task.done() and not task.cancelled() for task in supervisor.tasks)


async def test_periodic_jobs_run_again_and_a_failing_one_is_restarted() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor("unit-periodic", stopping, policy=FAST)
    calls: list[int] = []

    async def job(_: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("database away")

    supervisor.add("sweep", periodic(job, 0.01))
    supervisor.start(SimpleNamespace(stopping=stopping))
    await _until(lambda: len(calls) >= 5)
    assert supervisor.states["sweep"].restarts == 1
    stopping.set()
    await supervisor.stop(1.0)


def test_restart_delays_grow_and_are_capped() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=30.0)
    delays = [policy.delay(n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0
    assert delays[4] >= 8.0
    assert max(delays) <= 30.0
    assert delays[-1] == 30.0
    assert [backoff_delay(n, 1.0, 60.0) for n in (1, 2, 3, 7, 8)] == [1.0, 2.0, 4.0, 60.0, 60.0]


def test_a_worker_name_is_supervised_once() -> None:
    supervisor = Supervisor("unit-names", asyncio.Event())

    async def worker(_: object) -> None:
        return None

    supervisor.add("one", worker)
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.add("one", worker)


async def test_an_optional_worker_down_is_noted_but_does_not_fail_readiness() -> None:
    stopping = asyncio.Event()
    supervisor = Supervisor("unit-optional", stopping, grace_seconds=0.2, policy=FAST)

    async def fails(_: object) -> None:
        raise ConnectionError("stream missing")

    supervisor.add("cache-feed", fails, critical=False)
    supervisor.start(SimpleNamespace(stopping=stopping))
    await _until(lambda: supervisor.states["cache-feed"].restarts >= 2)
    await asyncio.sleep(0.25)
    await supervisor.check()  # does not raise
    note = await supervisor.degraded()
    assert note is not None
    assert note.startswith("cache-feed down for")
    stopping.set()
    await supervisor.stop(1.0)
