"""Cancelling a run across identities (issue #18, item 2): the scheduler withdraws a run's request
from SYNC, and the gateway, as itself, can tell (it may read single SYNC messages, not delete them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from callstream.contracts import SYNC, inbox_prefix, sync_requested_subject
from callstream.devstack import pytest_plugin
from callstream.devstack._servers import NatsServer

pytestmark = pytest.mark.integration

DENIED_WAIT = 1.0  # a denied request is dropped by the server: its answer never comes


@pytest.fixture
def server(test_servers: pytest_plugin.TestServers) -> NatsServer:
    if test_servers.nats is None:
        pytest.skip("needs the embedded NATS server")
    return test_servers.nats


@contextlib.asynccontextmanager
async def connect_as(server: NatsServer, identity: str) -> AsyncIterator[Client]:
    nc = await nats.connect(
        server.url_as(identity), inbox_prefix=inbox_prefix(identity), allow_reconnect=False, connect_timeout=2
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_the_gateway_sees_a_withdrawn_request_and_cannot_withdraw_one(
    server: NatsServer, jetstream: object
) -> None:
    async with connect_as(server, "scheduler") as sched, connect_as(server, "gateway") as gw:
        sjs, gjs = sched.jetstream(timeout=5), gw.jetstream(timeout=DENIED_WAIT)
        ack = await sjs.publish(sync_requested_subject("fathom"), b"{}", headers={"Nats-Msg-Id": "cancel-1"})
        assert (await gjs.get_msg(SYNC, ack.seq)).data == b"{}"
        with pytest.raises(nats.errors.TimeoutError):
            await gjs.delete_msg(SYNC, ack.seq)
        await sjs.delete_msg(SYNC, ack.seq)  # the cancel
        with pytest.raises(NotFoundError):
            await gjs.get_msg(SYNC, ack.seq)
