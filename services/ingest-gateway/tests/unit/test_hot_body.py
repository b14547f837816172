"""The webhook fast path's body read (issue #20, item 3): it stops when the server's body timeout
ends the read, and a large body is not held three times (body, chunks, event)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callstream.gateway._hot import _Disconnected, _read_body, _replay


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
    got = await _read_body(_receiver([{"type": "http.request", "body": body}]), 10_000, received)
    assert got is body  # no copy


async def test_a_body_in_chunks_is_held_once_after_joining() -> None:
    chunks = [b"a" * 100, b"b" * 100, b"c" * 100]
    messages = [{"type": "http.request", "body": c, "more_body": i < 2} for i, c in enumerate(chunks)]
    received: list[Any] = []
    got = await _read_body(_receiver(messages), 10_000, received)
    assert got == b"".join(chunks)
    # the chunks are let go: a replay hands the app the joined body in one message
    assert received == [{"type": "http.request", "body": got, "more_body": False}]
    assert received[0]["body"] is got
    replay = _replay(received, _receiver([]))
    assert (await replay())["body"] is got


async def test_a_body_cut_off_by_the_servers_body_timeout_is_a_client_gone() -> None:
    """The server's body timeout (runtime._limits; ``test_slow_clients.py`` holds both servers to
    it) ends ``receive`` with a disconnect: the fast path stops there and answers no one."""
    messages = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    with pytest.raises(_Disconnected):
        await _read_body(_receiver(messages), 10_000, [])


async def test_a_body_past_the_limit_is_not_read_further() -> None:
    messages = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
    assert await _read_body(_receiver(messages, then_hang=True), 1000, []) is None
    assert await _read_body(_receiver([{"type": "http.request", "body": b"x" * 2000}]), 1000, []) is None
