"""The webhook fast path's body read (issue #20, item 3): it never waits for the rest of a body
for ever, and a large body is not held three times (body, chunks, event)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callstream.gateway._hot import _read_body, _replay
from callstream.runtime import ApiError


def _receiver(messages: list[dict[str, Any]], then_hang: bool = False) -> Any:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if then_hang:
            await asyncio.Event().wait()  # a sender that stopped half way
        return {"type": "http.disconnect"}

    return receive


async def test_a_body_in_one_message_is_taken_as_it_is() -> None:
    body = b"x" * 1000
    received: list[Any] = []
    got = await _read_body(_receiver([{"type": "http.request", "body": body}]), 10_000, received, 1.0)
    assert got is body  # no copy


async def test_a_body_in_chunks_is_held_once_after_joining() -> None:
    chunks = [b"a" * 100, b"b" * 100, b"c" * 100]
    messages = [{"type": "http.request", "body": c, "more_body": i < 2} for i, c in enumerate(chunks)]
    received: list[Any] = []
    got = await _read_body(_receiver(messages), 10_000, received, 1.0)
    assert got == b"".join(chunks)
    # the chunks are let go: a replay hands the app the joined body in one message
    assert received == [{"type": "http.request", "body": got, "more_body": False}]
    assert received[0]["body"] is got
    replay = _replay(received, _receiver([]))
    assert (await replay())["body"] is got


async def test_a_body_that_stops_arriving_is_a_408_within_the_timeout() -> None:
    messages = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError) as caught:
        await _read_body(_receiver(messages, then_hang=True), 10_000, [], 0.3)
    assert caught.value.status_code == 408
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_body_past_the_limit_is_not_read_further() -> None:
    messages = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
    assert await _read_body(_receiver(messages, then_hang=True), 1000, [], 5.0) is None
    assert await _read_body(_receiver([{"type": "http.request", "body": b"x" * 2000}]), 1000, [], 5.0) is None
