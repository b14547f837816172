"""NATS authenticates every client and each service's identity may do only what it needs
(contracts' ``nats_permissions``), on the same embedded server every test uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from callstream.contracts import (
    CALLS_RAW,
    GATEWAY_PULL_CONSUMER,
    SYNC,
    inbox_prefix,
    nats_identities,
    raw_calls_subject,
    sync_requested_subject,
)
from callstream.devstack import pytest_plugin
from callstream.devstack._process import ServiceProcess, base_service_env
from callstream.devstack._servers import NatsServer

pytestmark = pytest.mark.integration

DENIED_WAIT = 1.0  # a denied request is dropped by the server: its answer never comes


@pytest.fixture
def server(test_servers: pytest_plugin.TestServers) -> NatsServer:
    if test_servers.nats is None:
        pytest.skip("needs the embedded NATS server")
    return test_servers.nats


@contextlib.asynccontextmanager
async def connect_as(server: NatsServer, identity: str) -> AsyncIterator[tuple[Client, list[Exception]]]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        server.url_as(identity),
        inbox_prefix=inbox_prefix(identity),
        allow_reconnect=False,
        connect_timeout=2,
        error_cb=on_error,
    )
    try:
        yield nc, errors
    finally:
        await nc.close()


async def test_a_client_without_credentials_is_refused(server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error) as refused:
        await nats.connect(server.bare_url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)
    assert "authorization" in str(refused.value).lower() or isinstance(refused.value, nats.errors.NoServersError)


async def test_a_wrong_password_is_refused(server: NatsServer) -> None:
    url = server.url_as("gateway").replace(urlsplit(server.url_as("gateway")).password or "", "not-the-password")
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)


async def test_the_tests_nats_url_carries_the_operator_identity(nats_url: str) -> None:
    """The suite runs with authentication on: the fixture's URL is the operator's."""
    assert urlsplit(nats_url).username == "operator"


def test_a_started_service_gets_its_own_identity(database_url: str, nats_url: str, tmp_path: object) -> None:
    env = base_service_env(database_url, nats_url)
    proc = ServiceProcess.named("linker", env, tmp_path / "logs")  # type: ignore[operator]
    assert proc.env["CALLSTREAM_NATS_USER"] == "linker"
    assert urlsplit(proc.env["CALLSTREAM_NATS_URL"]).username is None
    assert proc.env["CALLSTREAM_NATS_PASSWORD"] != urlsplit(nats_url).password


async def test_the_linker_cannot_publish_raw_calls(server: NatsServer, jetstream: object) -> None:
    async with connect_as(server, "linker") as (nc, errors):
        js = nc.jetstream(timeout=DENIED_WAIT)
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(raw_calls_subject("fathom"), b'{"forged": true}', headers={"Nats-Msg-Id": "forged-1"})
        await nc.publish(raw_calls_subject("fathom"), b'{"forged": true}')  # core NATS: dropped too
        await nc.flush()
        await asyncio.sleep(0.2)
        assert any("permissions violation" in str(e).lower() for e in errors)
    async with connect_as(server, "operator") as (op, _):
        assert (await op.jetstream().stream_info(CALLS_RAW)).state.messages == 0


async def test_the_gateway_may_publish_raw_calls(server: NatsServer, jetstream: object) -> None:
    async with connect_as(server, "gateway") as (nc, errors):
        ack = await nc.jetstream(timeout=5).publish(
            raw_calls_subject("fathom"), b"{}", headers={"Nats-Msg-Id": "allowed-1"}
        )
        assert ack.stream == CALLS_RAW
        assert not errors


async def test_the_linker_cannot_purge_sync_or_read_the_gateways_consumer(
    server: NatsServer, jetstream: object
) -> None:
    async with connect_as(server, "scheduler") as (sched, _):
        await sched.jetstream(timeout=5).publish(sync_requested_subject("gong"), b"{}", headers={"Nats-Msg-Id": "r1"})
    async with connect_as(server, "linker") as (nc, _):
        js = nc.jetstream(timeout=DENIED_WAIT)
        with pytest.raises(nats.errors.TimeoutError):
            await js.purge_stream(SYNC)
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_stream(SYNC)
        with pytest.raises(nats.errors.TimeoutError):
            await js.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
        sub = await js.pull_subscribe_bind(durable=GATEWAY_PULL_CONSUMER.durable, stream=SYNC)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=DENIED_WAIT)
        # Nor a consumer of its own on another's stream, nor a direct look at its messages.
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(SYNC, ConsumerConfig(durable_name="sneak", deliver_policy=DeliverPolicy.ALL))
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_msg(SYNC, seq=1)
    async with connect_as(server, "operator") as (op, _):
        ojs = op.jetstream()
        assert (await ojs.stream_info(SYNC)).state.messages == 1
        info = await ojs.consumer_info(SYNC, GATEWAY_PULL_CONSUMER.durable)
        assert info.num_pending == 1
        assert info.num_ack_pending == 0


async def test_a_service_cannot_listen_to_stream_subjects_or_another_inbox(
    server: NatsServer, jetstream: object
) -> None:
    async with connect_as(server, "linker") as (nc, errors):
        got: list[bytes] = []

        async def on_msg(msg: object) -> None:
            got.append(msg.data)  # type: ignore[attr-defined]

        await nc.subscribe("calls.raw.>", cb=on_msg)
        await nc.subscribe(f"{inbox_prefix('gateway')}.>", cb=on_msg)
        await nc.flush()
        async with connect_as(server, "gateway") as (gw, _):
            await gw.jetstream(timeout=5).publish(raw_calls_subject("gong"), b"secret", headers={"Nats-Msg-Id": "s1"})
        await asyncio.sleep(0.3)
        assert got == []
        assert sum("permissions violation" in str(e).lower() for e in errors) >= 2


def test_every_identity_has_a_password_in_the_server_config(server: NatsServer) -> None:
    text = server.config_file.read_text()
    for identity in nats_identities():
        assert f'user: "{identity}"' in text
