"""Hostile clients inside the network, against the running stack (issue #20, item 1): NATS refuses a
client without credentials, and a pod holding one service's credentials (the linker's) can neither
inject a raw call into another workspace, nor read the transcripts the gateway published, nor
destroy what other services keep."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import nats
import nats.errors
import pytest
from nats.js.api import ConsumerConfig

from callstream.contracts import CALLS_RAW, NORMALIZER_CONSUMER, SYNC, inbox_prefix, raw_calls_subject

from .conftest import Stack, eventually, fathom_meeting, signed_headers

DENIED_WAIT = 1.0


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


async def test_the_broker_refuses_a_client_without_credentials(stack: Stack) -> None:
    with pytest.raises(nats.errors.Error):
        await nats.connect(_bare(stack.nats_url), allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)


async def test_the_linkers_credentials_cannot_forge_read_or_destroy(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(640_001)
    body = json.dumps(meeting).encode()
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        r = await client.post(
            f"/v1/webhooks/fathom/{integration_id}", content=body, headers=signed_headers(secret, body, "hb-1")
        )
        assert r.status_code == 202, r.text
    dsn = stack.env["CALLSTREAM_DATABASE_URL"]

    async def stored(workspace: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("select count(*) from messages where workspace_id = $1", workspace))
        finally:
            await conn.close()

    await eventually(lambda: stored("acme"), timeout=60, interval=0.5)

    linker_env = stack.procs["linker"].env  # what a compromised linker pod holds
    nc = await nats.connect(
        _bare(stack.nats_url),
        user=linker_env["CALLSTREAM_NATS_USER"],
        password=linker_env["CALLSTREAM_NATS_PASSWORD"],
        inbox_prefix=inbox_prefix("linker"),
        allow_reconnect=False,
    )
    try:
        js = nc.jetstream(timeout=DENIED_WAIT)
        forged = msgspec.json.encode(
            {"v": 1, "event_id": "forged", "source": "fathom", "workspace_id": "victim", "external_id": "1"}
        )
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(raw_calls_subject("fathom", "int-perm"), forged, headers={"Nats-Msg-Id": "forged"})
        with pytest.raises(nats.errors.TimeoutError):  # the transcripts kept in CALLS_RAW
            await js.get_msg(CALLS_RAW, seq=1)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(CALLS_RAW, ConsumerConfig(durable_name="exfiltrate"))
        sub = await js.pull_subscribe_bind(durable=NORMALIZER_CONSUMER.durable, stream=CALLS_RAW)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=DENIED_WAIT)
        for stream in (CALLS_RAW, SYNC):
            with pytest.raises(nats.errors.TimeoutError):
                await js.purge_stream(stream)
    finally:
        await nc.close()
    await asyncio.sleep(1.0)
    assert await stored("victim") == 0
    op = await nats.connect(stack.nats_url)
    try:
        assert (await op.jetstream().stream_info(CALLS_RAW)).state.messages == 1  # still there, only the real one
    finally:
        await op.close()
