"""Acks after commit are fire-and-forget: one that cannot be sent is logged, and the rest go out."""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from callstream.normalizer._consumer import RawCallProcessor
from callstream.normalizer._settings import Settings


class _Client:
    """Stands in for the connection: publishes to two reply subjects fail as on a closed connection."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.published: list[str] = []

    async def publish(self, subject: str, *_: Any, **__: Any) -> None:
        if subject in self.failing:
            raise nats.errors.ConnectionClosedError
        self.published.append(subject)


async def test_an_ack_that_cannot_be_sent_is_logged_and_the_others_are_sent():
    client = _Client(failing={"$JS.ACK.2", "$JS.ACK.4"})
    msgs = [Msg(_client=client, subject="calls.raw.fathom", reply=f"$JS.ACK.{n}") for n in range(1, 6)]  # type: ignore[arg-type]
    processor = RawCallProcessor(None, None, Settings.model_construct())  # type: ignore[arg-type]
    with capture_logs() as logs:
        await processor._ack(msgs)
    assert client.published == ["$JS.ACK.1", "$JS.ACK.3", "$JS.ACK.5"]
    assert [(e["event"], e["count"]) for e in logs if e["log_level"] == "warning"] == [("ack failed", 2)]
