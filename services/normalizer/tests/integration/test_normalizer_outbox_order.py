"""The outbox relay never lets one row block the rows behind it (issue #17, items 3 and 5): a row
that can never be published is dead-lettered with its reason, and the rows after it are published,
in commit order, exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.js.api import StreamConfig
from normalizer_itkit import stream_messages

from callstream.contracts import DLQ, MESSAGES, DeadLetter
from callstream.devstack import NatsServer, free_port
from callstream.normalizer._outbox import OUTBOX_DLQ_SUBJECT, publish_pending
from callstream.runtime import ensure_all

SMALL_MAX_PAYLOAD = 64 * 1024
BIG = 100 * 1024


async def _rows(conn: asyncpg.Connection, sizes: list[int]) -> list[int]:
    """Outbox rows in commit order, each a JSON payload of about ``size`` bytes."""
    ids = []
    for n, size in enumerate(sizes):
        payload = msgspec.json.encode({"n": n, "pad": "x" * size})
        ids.append(
            await conn.fetchval(
                "insert into outbox (subject, payload) values ('messages.upserted.fathom', $1) returning id", payload
            )
        )
    return ids


async def _published_ids(js: Any) -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in await stream_messages(js, MESSAGES)]


async def _dead_letters(js: Any) -> list[DeadLetter]:
    return [msgspec.json.decode(m.data, type=DeadLetter) for m in await stream_messages(js, DLQ, OUTBOX_DLQ_SUBJECT)]


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[Any]:
    """A server whose max_payload is small, as a deployment that did not raise it."""
    server = NatsServer(tmp_path / "js", port=free_port(), name="small-nats", max_payload=SMALL_MAX_PAYLOAD)
    server.start()
    nc = await nats.connect(server.url)
    try:
        await ensure_all(nc.jetstream())
        yield nc
    finally:
        await nc.close()
        server.stop()


async def test_a_row_over_max_payload_is_dead_lettered_and_the_rows_after_it_go_out_in_order(
    database_url: str, small_nats: Any
) -> None:
    js = small_nats.jetstream()
    conn = await asyncpg.connect(database_url)
    try:
        ids = await _rows(conn, [10, 10, BIG, 10, 10])
        assert await publish_pending(conn, js, 500) == 5
        assert await publish_pending(conn, js, 500) == 0
        assert await conn.fetchval("select count(*) from outbox where published_at is null") == 0
    finally:
        await conn.close()
    assert await _published_ids(js) == [f"outbox-{i}" for i in (ids[0], ids[1], ids[3], ids[4])]
    (letter,) = await _dead_letters(js)
    assert letter.consumer == "normalizer-outbox"
    assert letter.subject == "messages.upserted.fathom"
    assert f"outbox row {ids[2]}" in letter.error
    assert "max_payload" in letter.error
    assert letter.data == b""  # its dead letter could not carry it either


async def test_a_row_the_stream_refuses_is_dead_lettered_with_its_bytes_and_the_rest_go_out_in_order(
    database_url: str, nc: Any
) -> None:
    js = nc.jetstream()
    info = await js.stream_info(MESSAGES)
    await js.update_stream(StreamConfig.from_response({**info.config.as_dict(), "max_msg_size": SMALL_MAX_PAYLOAD}))
    conn = await asyncpg.connect(database_url)
    try:
        ids = await _rows(conn, [10, BIG, 10, 10])
        big_payload = await conn.fetchval("select payload from outbox where id = $1", ids[1])
        assert await publish_pending(conn, js, 500) == 4
        assert await conn.fetchval("select count(*) from outbox where published_at is null") == 0
    finally:
        await conn.close()
    assert await _published_ids(js) == [f"outbox-{i}" for i in (ids[0], ids[2], ids[3])]
    (letter,) = await _dead_letters(js)
    assert "larger than the stream accepts" in letter.error
    assert letter.data == big_payload  # redrivable once the stream accepts it


async def test_a_row_refused_for_now_is_not_overtaken_by_the_rows_after_it(database_url: str, nc: Any) -> None:
    """The stream refuses one row for a while (here a per-subject limit that an operator lifts
    later; a stream leader change would do the same) while the rows after it would be stored: none
    of them may land before it. Before, they were stored at once and the refused row came after."""
    js = nc.jetstream()
    info = await js.stream_info(MESSAGES)
    limited = {**info.config.as_dict(), "max_msgs_per_subject": 1, "discard": "new", "discard_new_per_subject": True}
    await js.update_stream(StreamConfig.from_response(limited))
    await js.publish("messages.upserted.fathom", b"{}", headers={"Nats-Msg-Id": "earlier"})  # the subject is full
    conn = await asyncpg.connect(database_url)
    try:
        first = await conn.fetchval(
            "insert into outbox (subject, payload) values ('messages.upserted.fathom', '{}') returning id"
        )
        rest = [
            await conn.fetchval(
                "insert into outbox (subject, payload) values ($1, '{}') returning id", f"messages.upserted.s{n}"
            )
            for n in range(3)
        ]
        with pytest.raises(Exception):  # noqa: B017 - whichever refusal nats-py raises: the cycle fails
            await publish_pending(conn, js, 500)
        assert await _published_ids(js) == ["earlier"]  # nothing overtook the refused row
        await js.purge_stream(MESSAGES, subject="messages.upserted.fathom")  # the operator lifts it
        assert await publish_pending(conn, js, 500) == 4
    finally:
        await conn.close()
    assert await _published_ids(js) == [f"outbox-{i}" for i in (first, *rest)]
