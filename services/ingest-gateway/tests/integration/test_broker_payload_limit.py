"""A NATS server whose max_payload is smaller than the body limit needs (a deployment that did not
raise it) is never a 503 loop (issue #17, item 3): the gateway answers 413 to what it could not
publish and dead-letter, shows the limit in force in its metrics, and a pull run records a meeting
it cannot carry on the DLQ and goes on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from gateway_harness import FakeProvider, make_settings, start_gateway

from callstream.contracts import CALLS_RAW, DLQ, DeadLetter, RawCall, largest_dead_letterable
from callstream.devstack import NatsServer, free_port
from callstream.gateway.pull._publish import TOO_LARGE_SUBJECT, Publisher
from callstream.runtime import ensure_all

MIB = 1024 * 1024


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "js", port=free_port(), name="small-nats", max_payload=MIB)
    server.start()
    nc = await nats.connect(server.url)
    await ensure_all(nc.jetstream())
    await nc.close()
    try:
        yield server
    finally:
        server.stop()


def _meeting(recording_id: int, size: int) -> bytes:
    return json.dumps({"recording_id": recording_id, "title": "t", "notes": "x" * size}).encode()


async def _metric(gw: Any, name: str) -> float | None:
    text = (await gw.client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def test_bodies_the_broker_cannot_carry_are_413_not_503(database_url: str, small_nats: NatsServer) -> None:
    limit = largest_dead_letterable(MIB)
    async for gw in start_gateway(make_settings(database_url, small_nats.url), FakeProvider()):
        iid = (await gw.create_fathom())["id"]
        await gw.wait_cached(iid)
        deadline = time.monotonic() + 10
        while (shown := await _metric(gw, "callstream_gateway_body_limit_bytes")) == 16 * MIB:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert shown is not None
        assert shown < limit
        assert await _metric(gw, "callstream_gateway_broker_max_payload_bytes") == MIB

        small = await gw.deliver(iid, _meeting(1, limit // 2))
        assert small.status_code == 202, small.text
        for size in (limit, 2 * MIB):  # over what the broker carries with its dead letter; over max_payload
            big = await gw.deliver(iid, _meeting(2, size))
            assert big.status_code == 413, big.text
            assert big.json()["error"] == "body_too_large"
            assert "retry-after" not in big.headers
            # not final: once the server's max_payload is raised, the sender's next try gets in
            assert "webhook-delivery" not in big.headers


async def test_a_pulled_meeting_the_broker_cannot_carry_is_dead_lettered_and_the_page_goes_on(
    small_nats: NatsServer,
) -> None:
    nc = await nats.connect(small_nats.url)
    try:
        js = nc.jetstream()

        def call(n: int, size: int) -> RawCall:
            return RawCall(
                event_id=f"pull-{n}",
                source="fathom",
                workspace_id="ws",
                integration_id="int-1",
                external_id=str(n),
                origin="pull",
                received_at=datetime.now(UTC),
                payload=msgspec.Raw(_meeting(n, size)),
            )

        await Publisher(js, 1.0).calls("fathom", [call(1, 100), call(2, 2 * MIB), call(3, 100)])
        stored = (await js.stream_info(CALLS_RAW)).state.messages
        assert stored == 2
        raw = await js.get_last_msg(DLQ, TOO_LARGE_SUBJECT)
        letter = msgspec.json.decode(raw.data or b"", type=DeadLetter)
        assert letter.headers["external-id"] == "2"
        assert "max_payload" in letter.error
        assert letter.data == b""
    finally:
        await nc.close()
