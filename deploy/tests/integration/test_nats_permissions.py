"""NATS authenticates every client and each service's identity may do only what it needs
(contracts' ``nats_permissions``), on the same embedded server every test uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from callstream.contracts import (
    CALLS_RAW,
    GATEWAY_PULL_CONSUMER,
    SYNC,
    DeadLetter,
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
            await js.publish(
                raw_calls_subject("fathom", "int-perm"), b'{"forged": true}', headers={"Nats-Msg-Id": "forged-1"}
            )
        await nc.publish(raw_calls_subject("fathom", "int-perm"), b'{"forged": true}')  # core NATS: dropped too
        await nc.flush()
        await asyncio.sleep(0.2)
        assert any("permissions violation" in str(e).lower() for e in errors)
    async with connect_as(server, "operator") as (op, _):
        assert (await op.jetstream().stream_info(CALLS_RAW)).state.messages == 0


async def test_the_gateway_may_publish_raw_calls(server: NatsServer, jetstream: object) -> None:
    async with connect_as(server, "gateway") as (nc, errors):
        ack = await nc.jetstream(timeout=5).publish(
            raw_calls_subject("fathom", "int-perm"), b"{}", headers={"Nats-Msg-Id": "allowed-1"}
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
            await gw.jetstream(timeout=5).publish(
                raw_calls_subject("gong", "int-perm"), b"secret", headers={"Nats-Msg-Id": "s1"}
            )
        await asyncio.sleep(0.3)
        assert got == []
        assert sum("permissions violation" in str(e).lower() for e in errors) >= 2


def test_every_identity_has_a_password_in_the_server_config(server: NatsServer) -> None:
    text = server.config_file.read_text()
    for identity in nats_identities():
        assert f'user: "{identity}"' in text


# What each service does on NATS works under its own identity (the table is not too narrow).


async def test_the_normalizer_reads_redrives_and_replays_under_its_identity(
    server: NatsServer, jetstream: object
) -> None:
    from callstream.normalizer import _dlq
    from callstream.normalizer._replay import _consumer_config

    async with connect_as(server, "gateway") as (gw, _):
        await gw.jetstream(timeout=5).publish(
            raw_calls_subject("gong", "int-perm"), b"{}", headers={"Nats-Msg-Id": "rp1"}
        )
    async with connect_as(server, "normalizer") as (nc, errors):
        js = nc.jetstream(timeout=5)
        letter = msgspec.json.encode(
            DeadLetter(
                consumer="normalizer",
                subject=raw_calls_subject("gong", "int-perm"),
                stream_sequence=1,
                data=b"{}",
                error="unmappable",
                delivery_count=10,
                failed_at=datetime.now(UTC),
            )
        )
        await js.publish(_dlq.DLQ_SUBJECT, letter)
        found = await _dlq.entries(js)
        assert [seq for seq, _ in found] == [1]
        await _dlq.redrive(js, *found[0])
        assert await _dlq.entries(js) == []
        sub = await js.pull_subscribe("calls.raw.>", stream=CALLS_RAW, config=_consumer_config(1))
        msgs = await sub.fetch(2, timeout=5)
        assert len(msgs) == 2  # the original and the redriven one
        for msg in msgs:
            await msg.ack_sync()
        await sub.unsubscribe()
        assert not errors


async def test_the_gateway_uses_its_kv_buckets(server: NatsServer, jetstream: object) -> None:
    from nats.js.api import KeyValueConfig

    async with connect_as(server, "gateway") as (nc, errors):
        js = nc.jetstream(timeout=5)
        kv = await js.create_key_value(KeyValueConfig(bucket="gateway_pull_quota", history=1))
        revision = await kv.put("acct", b"1")
        await kv.update("acct", b"2", last=revision)
        assert (await (await js.key_value("gateway_pull_quota")).get("acct")).value == b"2"
        with pytest.raises(nats.errors.TimeoutError):  # not another bucket
            await nc.jetstream(timeout=DENIED_WAIT).create_key_value(KeyValueConfig(bucket="someone_else"))
    async with connect_as(server, "operator") as (op, _):
        await op.jetstream().delete_key_value("gateway_pull_quota")
    assert sum("permissions violation" in str(e).lower() for e in errors) == 1


async def test_the_scheduler_cancels_a_queued_run(server: NatsServer, jetstream: object) -> None:
    async with connect_as(server, "scheduler") as (nc, errors):
        js = nc.jetstream(timeout=5)
        ack = await js.publish(sync_requested_subject("fathom"), b"{}", headers={"Nats-Msg-Id": "c1"})
        assert await js.delete_msg(SYNC, ack.seq)
        assert (await js.stream_info(SYNC)).state.messages == 0
        assert not errors


async def test_the_linker_follows_messages_with_an_ordered_consumer(server: NatsServer, jetstream: object) -> None:
    from nats.js.api import DeliverPolicy as Deliver

    async with connect_as(server, "linker") as (nc, errors):
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: object) -> None:
            got.put_nowait(msg.data)  # type: ignore[attr-defined]

        sub = await nc.jetstream(timeout=5).subscribe(
            "messages.upserted.>",
            stream="MESSAGES",
            ordered_consumer=True,
            deliver_policy=Deliver.NEW,
            idle_heartbeat=2.0,
            cb=on_msg,
        )
        async with connect_as(server, "normalizer") as (norm, _):
            await norm.jetstream(timeout=5).publish("messages.upserted.gong", b"m1", headers={"Nats-Msg-Id": "m1"})
        assert await asyncio.wait_for(got.get(), timeout=5) == b"m1"
        await sub.unsubscribe()
        assert not errors
