"""The test fixture that empties JetStream between tests: a store nats-server is still removing
(10049) is waited out; any other refusal stops the test at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.errors import NotFoundError, ServerError

from callstream.contracts import CONSUMERS, STREAMS
from callstream.devstack.pytest_plugin import declare_fresh_streams


class _JetStream:
    """Streams by name; ``add_stream`` refuses with ``refusal`` the first ``refusals`` times."""

    def __init__(self, refusal: int, refusals: int) -> None:
        self.streams: dict[str, Any] = {"OLD": None}
        self.consumers: list[str] = []
        self._refusal = refusal
        self._refusals = refusals
        self.refused = 0

    async def streams_info(self) -> list[Any]:
        return [SimpleNamespace(config=SimpleNamespace(name=name)) for name in self.streams]

    async def delete_stream(self, name: str) -> None:
        del self.streams[name]

    async def stream_info(self, name: str) -> Any:
        if name not in self.streams:
            raise NotFoundError(code=404, err_code=10059, description="stream not found")
        return self.streams[name]

    async def add_stream(self, config: Any) -> None:
        if self.refused < self._refusals:
            self.refused += 1
            raise ServerError(code=500, err_code=self._refusal, description="refused")
        self.streams[config.name] = config

    async def update_stream(self, config: Any) -> None:
        self.streams[config.name] = config

    async def add_consumer(self, stream: str, config: Any) -> None:
        self.consumers.append(config.durable_name)


async def test_a_store_still_being_removed_is_waited_out() -> None:
    js = _JetStream(refusal=10049, refusals=3)
    await declare_fresh_streams(js)
    assert js.refused == 3
    assert sorted(js.streams) == sorted(s.name for s in STREAMS)  # "OLD" is gone
    assert len(js.consumers) == len(CONSUMERS)


async def test_any_other_server_error_is_raised_at_once() -> None:
    js = _JetStream(refusal=10047, refusals=100)  # insufficient storage: waiting will not help
    with pytest.raises(ServerError):
        await declare_fresh_streams(js)
    assert js.refused == 1
