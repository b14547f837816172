"""``ensure_all`` repeats its (idempotent) declarations while JetStream answers late or with 503,
as a cluster does while it elects leaders, and gives up on anything else at once. The broker's
real behaviour is covered by deploy/tests/integration/test_devstack_nats_cluster.py; this pins the
retry rule itself with a stand-in that fails on cue."""

from __future__ import annotations

from typing import Any

import nats.errors
import pytest
from nats.js.errors import NotFoundError, ServiceUnavailableError

from callstream.contracts import CONSUMERS, STREAMS
from callstream.runtime import ensure_all


class FlakyJetStream:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.streams: set[str] = set()
        self.consumers: list[str] = []

    async def stream_info(self, name: str) -> Any:
        if name not in self.streams:
            raise NotFoundError
        return name

    async def add_stream(self, config: Any) -> None:
        self.streams.add(config.name)

    async def update_stream(self, config: Any) -> None:
        self.streams.add(config.name)

    async def add_consumer(self, stream: str, config: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.consumers.append(config.durable_name)


async def test_late_or_unavailable_answers_are_declared_again_until_all_exist() -> None:
    js = FlakyJetStream([nats.errors.TimeoutError(), ServiceUnavailableError(), nats.errors.TimeoutError()])
    await ensure_all(js, patience_seconds=30)  # type: ignore[arg-type]
    assert js.streams == {s.name for s in STREAMS}
    assert js.consumers[-len(CONSUMERS) :] == [c.durable for c in CONSUMERS]
    assert js.failures == []


async def test_other_errors_and_spent_patience_are_raised() -> None:
    with pytest.raises(ValueError, match="bad config"):
        await ensure_all(FlakyJetStream([ValueError("bad config")]), patience_seconds=30)  # type: ignore[arg-type]
    always_late = FlakyJetStream([nats.errors.TimeoutError() for _ in range(100)])
    with pytest.raises(nats.errors.TimeoutError):
        await ensure_all(always_late, patience_seconds=0.5)  # type: ignore[arg-type]
    assert len(always_late.failures) < 100
