"""The broker goes away: webhooks answer 503 with Retry-After; once it is back, the resent
webhooks are published exactly once."""

from __future__ import annotations

import asyncio
import time

import nats
from gateway_harness import FakeProvider, make_settings, start_gateway

from callstream.contracts import CALLS_RAW, STREAMS
from callstream.devstack._servers import NatsServer
from callstream.runtime import ensure_all, stream_config

BODY = b'{"recording_id": 4242, "title": "during an outage"}'


async def _count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(CALLS_RAW)).state.messages)
    finally:
        await nc.close()


async def test_webhooks_answer_503_while_nats_is_down_and_resends_publish_once(
    database_url: str, own_nats: NatsServer
) -> None:
    nc = await nats.connect(own_nats.url)
    await ensure_all(nc.jetstream())
    await nc.close()
    settings = make_settings(database_url, own_nats.url)
    async for gw in start_gateway(settings, FakeProvider()):
        integration = await gw.create_fathom()
        iid = integration["id"]
        assert (await gw.deliver(iid, BODY, webhook_id="msg_before")).status_code == 202

        own_nats.stop()
        started = time.monotonic()
        down = await gw.deliver(iid, BODY, webhook_id="msg_during", headers={"x-request-id": "down-1"})
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == str(settings.retry_after_seconds)
        assert down.json()["error"] == "broker_unavailable"
        assert time.monotonic() - started < settings.publish_timeout_seconds + 2
        hot = gw.app.state.hot_webhooks
        assert hot.answered > 0
        hot.enabled = False  # the route's answer to the same request, for comparison
        routed = await gw.deliver(iid, BODY, webhook_id="msg_during", headers={"x-request-id": "down-1"})
        hot.enabled = True
        assert (routed.status_code, routed.content) == (down.status_code, down.content)
        assert sorted(routed.headers.multi_items()) == sorted(down.headers.multi_items())

        own_nats.start()
        broker = gw.app.state.runtime.broker
        deadline = time.monotonic() + 15
        while not broker.is_connected:
            assert time.monotonic() < deadline, "the gateway did not reconnect"
            await asyncio.sleep(0.1)
        resent = await gw.deliver(iid, BODY, webhook_id="msg_during")
        assert resent.status_code == 202, resent.text
        again = await gw.deliver(iid, BODY, webhook_id="msg_during")
        assert again.json()["duplicate"] is True
        assert await _count(own_nats.url) == 2


async def test_no_ack_in_time_is_503_and_nothing_is_lost(database_url: str, own_nats: NatsServer) -> None:
    """Connected, but JetStream does not take the message (its stream is gone): 503, then 202 once it is back."""
    nc = await nats.connect(own_nats.url)
    js = nc.jetstream()
    await ensure_all(js)
    settings = make_settings(database_url, own_nats.url)
    try:
        async for gw in start_gateway(settings, FakeProvider()):
            iid = (await gw.create_fathom())["id"]
            await js.delete_stream(CALLS_RAW)
            refused = await gw.deliver(iid, BODY, webhook_id="msg_x")
            assert refused.status_code == 503
            assert refused.headers["retry-after"]
            await js.add_stream(stream_config(next(s for s in STREAMS if s.name == CALLS_RAW)))
            assert (await gw.deliver(iid, BODY, webhook_id="msg_x")).status_code == 202
            assert await _count(own_nats.url) == 1
    finally:
        await nc.close()
