"""Background workers under a broken broker, on real service processes and a NATS server of the
test's own: a deleted consumer, a stopped server, a paused one. Each worker comes back by itself,
and while one stays down past its grace period ``/health/ready`` answers 503 naming it.

Before the runtime's supervisor, a deleted consumer stalled the normalizer's consumers, the
gateway's pull worker and the scheduler's event consumer for the life of the process (each
retried its fetch in place forever) while readiness stayed 200."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from callstream.contracts import (
    CALLS_RAW,
    FEATURES_LINKED,
    GATEWAY_PULL_CONSUMER,
    NORMALIZER_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    SCHEDULER_CONSUMER,
    FeatureLinked,
    MessageRef,
    RawCall,
    SyncFinished,
    SyncRequested,
    raw_calls_subject,
    sync_events_subject,
    sync_requested_subject,
)
from callstream.devstack import NatsServer, ServiceProcess, base_service_env
from callstream.runtime import ensure_all
from tests.e2e.conftest import eventually, fathom_meeting

GRACE = "4"  # CALLSTREAM_WORKER_GRACE_SECONDS for these processes (half of it clears a restarted worker)


def _raw_call(recording_id: int) -> bytes:
    meeting = fathom_meeting(recording_id)
    return msgspec.json.encode(
        RawCall(
            event_id=f"ev-{recording_id}",
            source="fathom",
            workspace_id="come-back",
            integration_id="int-come-back",
            external_id=str(recording_id),
            origin="pull",
            received_at=datetime.now(UTC),
            payload=msgspec.Raw(msgspec.json.encode(meeting)),
        )
    )


async def _ready(proc: ServiceProcess) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{proc.url}/health/ready")
    return r.status_code, r.json()


async def _restarts(proc: ServiceProcess, worker: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{proc.url}/metrics")).text
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("callstream_worker_restarts_total{") and f'worker="{worker}"' in line
    ]
    assert counts, f"no restart counter for {worker}"
    return sum(counts)


async def _declared(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await ensure_all(nc.jetstream())
    finally:
        await nc.close()


@pytest.fixture
async def broker(own_nats: NatsServer) -> NatsServer:
    await _declared(own_nats.url)
    return own_nats


@pytest.fixture
def env(database_url: str, broker: NatsServer) -> dict[str, str]:
    return {
        **base_service_env(database_url, broker.url),
        "CALLSTREAM_WORKER_GRACE_SECONDS": GRACE,
        "CALLSTREAM_WORKER_RESTART_MAX_SECONDS": "1",
        "CALLSTREAM_NORMALIZER_RETRY_BASE_SECONDS": "0.2",
        "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1",
    }


async def _stored(database_url: str, external_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("select count(*) from messages where external_id = $1", external_id))
    finally:
        await conn.close()


async def _linked(database_url: str, feature_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("select count(*) from message_features where feature_id = $1", feature_id))
    finally:
        await conn.close()


async def _consumed(js: JetStreamContext, stream: str, durable: str) -> bool:
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:  # not declared again yet
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0


async def test_deleted_consumers_come_back_in_every_service(
    env: dict[str, str], broker: NatsServer, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    procs = {name: start_service(name, env, wait=False) for name in ("normalizer", "gateway", "scheduler")}
    for proc in procs.values():
        await asyncio.to_thread(proc.wait_ready)
    nc = await nats.connect(broker.url)
    js = nc.jetstream()
    try:
        for spec in (NORMALIZER_CONSUMER, NORMALIZER_FEATURES_CONSUMER, GATEWAY_PULL_CONSUMER, SCHEDULER_CONSUMER):
            await js.delete_consumer(spec.stream, spec.durable)
        # normalizer: raw calls and feature links are handled again
        await js.publish(raw_calls_subject("fathom", "int-come-back"), _raw_call(7001))
        link = FeatureLinked(
            workspace_id="come-back", feature_id="f-back", message=MessageRef(source="fathom", external_id="7001")
        )
        await js.publish(FEATURES_LINKED, msgspec.json.encode(link))
        await eventually(lambda: _stored(database_url, "7001"), timeout=20)
        await eventually(lambda: _linked(database_url, "f-back"), timeout=20)
        # gateway: a sync request (for an integration it does not know) is taken and settled
        request = SyncRequested(
            run_id="run-come-back",
            integration_id="00000000-0000-0000-0000-000000000001",
            workspace_id="come-back",
            provider="fathom",
            mode="latest",
            limit=1,
            requested_at=datetime.now(UTC),
        )
        await js.publish(sync_requested_subject("fathom"), msgspec.json.encode(request))
        await eventually(lambda: _consumed(js, GATEWAY_PULL_CONSUMER.stream, GATEWAY_PULL_CONSUMER.durable), timeout=20)
        # scheduler: a sync event is taken and settled
        finished = SyncFinished(
            run_id="run-unknown",
            integration_id="00000000-0000-0000-0000-000000000002",
            status="error",
            pages=0,
            calls_published=0,
            error="test",
            at=datetime.now(UTC),
        )
        await js.publish(sync_events_subject("fathom"), msgspec.json.encode(finished))
        await eventually(lambda: _consumed(js, SCHEDULER_CONSUMER.stream, SCHEDULER_CONSUMER.durable), timeout=20)
        assert await _restarts(procs["normalizer"], "raw-calls") >= 1
        # (feature-links may need no restart: the raw-calls worker's restart declares both
        # consumers again, and its subscription, bound by name, goes on with the new one)
        assert await _restarts(procs["gateway"], "pull") >= 1
        assert await _restarts(procs["scheduler"], "sync-events") >= 1
        for proc in procs.values():  # a worker that came back does not hold readiness down

            async def ready(proc: ServiceProcess = proc) -> bool:
                return (await _ready(proc))[0] == 200

            await eventually(ready, timeout=float(GRACE) + 20)
    finally:
        await nc.close()


async def test_a_worker_that_cannot_start_shows_in_readiness_by_name_until_it_comes_back(
    env: dict[str, str], broker: NatsServer, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    """An operator's mistake: CALLS_RAW deleted and another stream created on its subjects. The
    normalizer's consumers can neither fetch nor declare their stream again; the broker itself
    answers, so only the workers' state can tell."""
    normalizer = start_service("normalizer", env)
    nc = await nats.connect(broker.url)
    js = nc.jetstream()
    try:
        await js.delete_stream(CALLS_RAW)
        await js.add_stream(StreamConfig(name="ROGUE", subjects=["calls.raw.>"]))

        async def down() -> dict[str, Any] | None:
            status, body = await _ready(normalizer)
            return body if status == 503 and body["checks"].get("workers") == "failing" else None

        body = await eventually(down, timeout=30)
        assert body["checks"]["broker"] == "ok"
        # Readiness tells a caller which check fails; the worker's name and error go to the log.
        logged = [line for line in normalizer.log(400).splitlines() if '"readiness"' in line and "not_ready" in line]
        assert any("WorkerDown: raw-calls" in line for line in logged), logged
        assert any("BadRequestError" in line for line in logged)  # the error's type, never its text
        assert await _restarts(normalizer, "raw-calls") >= 1
        await js.delete_stream("ROGUE")

        async def ready() -> bool:
            return (await _ready(normalizer))[0] == 200

        await eventually(ready, timeout=45)
        await js.publish(raw_calls_subject("fathom", "int-come-back"), _raw_call(7002))
        await eventually(lambda: _stored(database_url, "7002"), timeout=20)
    finally:
        await nc.close()


async def test_a_stopped_broker_makes_every_service_unready_and_all_work_resumes(
    env: dict[str, str], broker: NatsServer, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    names = ("normalizer", "gateway", "scheduler", "linker")
    procs = {name: start_service(name, env, wait=False) for name in names}
    for proc in procs.values():
        await asyncio.to_thread(proc.wait_ready)
    broker.stop()
    try:
        for proc in procs.values():

            async def unready(proc: ServiceProcess = proc) -> bool:
                return (await _ready(proc))[0] == 503

            await eventually(unready, timeout=30)
        await asyncio.sleep(float(GRACE) + 1)  # longer than the workers' grace
    finally:
        broker.start()
    for proc in procs.values():

        async def ready(proc: ServiceProcess = proc) -> bool:
            return (await _ready(proc))[0] == 200

        await eventually(ready, timeout=45)
    nc = await nats.connect(broker.url)
    try:
        await nc.jetstream().publish(raw_calls_subject("fathom", "int-come-back"), _raw_call(7004))
    finally:
        await nc.close()
    await eventually(lambda: _stored(database_url, "7004"), timeout=20)
    for proc in procs.values():  # a clean stop after the outage
        proc.terminate()
    for proc in procs.values():
        assert await asyncio.to_thread(proc.process.wait, 30) == 0, proc.log()


async def test_a_paused_broker_is_survived(
    env: dict[str, str], broker: NatsServer, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    """SIGSTOP: connections stay open but nothing answers (a hung server, a network partition):
    requests time out inside acks, naks and fetches instead of failing fast."""
    normalizer = start_service("normalizer", env)
    assert broker.process is not None
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        link = FeatureLinked(
            workspace_id="come-back", feature_id="f-paused", message=MessageRef(source="fathom", external_id="7003")
        )
        await js.publish(FEATURES_LINKED, msgspec.json.encode(link))
        os.kill(broker.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:

            async def unready() -> bool:
                return (await _ready(normalizer))[0] == 503

            await eventually(unready, timeout=30)
            # Long enough for the clients' stale-connection detection (2 pings, 5 s apart) to give
            # the connection up: a message delivered into a connection that dies afterwards comes
            # back only after the consumer's ack_wait (60 s), which this test does not wait for.
            await asyncio.sleep(max(0.0, 20 - (time.monotonic() - started)))
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)

        async def ready() -> bool:
            return (await _ready(normalizer))[0] == 200

        await eventually(ready, timeout=45)
        await js.publish(raw_calls_subject("fathom", "int-come-back"), _raw_call(7003))
        try:
            await eventually(lambda: _stored(database_url, "7003"), timeout=30)
        except AssertionError:
            info = await js.consumer_info(NORMALIZER_CONSUMER.stream, NORMALIZER_CONSUMER.durable)
            raise AssertionError(f"not stored; consumer {info}") from None
        # The link was published just before the pause: the server may have handed it to the
        # consumer's pull request without getting it onto the socket, so it comes back only when its
        # ack_wait runs out (counted from the pause). Late, never lost: wait for that, not less.
        redelivered_by = NORMALIZER_FEATURES_CONSUMER.ack_wait_seconds + 15 - (time.monotonic() - started)
        await eventually(lambda: _linked(database_url, "f-paused"), timeout=max(30.0, redelivered_by))
    finally:
        await nc.close()
