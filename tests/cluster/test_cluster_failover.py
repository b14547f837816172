"""Nothing lost, nothing doubled on a three-server NATS cluster (R3 streams) with two replicas each of
the gateway, normalizer and linker, while one NATS server (the ``CALLS_RAW`` stream leader), one
gateway, one normalizer and one linker are SIGKILLed at seeded moments under load and stay dead.

A Fathom-like sender (``tests/faults/chaos.py``) spreads signed webhooks over both gateways as a load
balancer would, retrying on the other replica with the same ``webhook-id``; an internal subscriber
with a durable consumer counts ``MessageUpserted`` events while it runs; a reader resolves links
through both linkers. Afterwards every acked meeting is stored once, announced ``created`` once, no
payload went to the DLQ, and the surviving linker resolves every message."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from callstream.contracts import STREAMS
from callstream.devstack import (
    EmbeddedPostgres,
    NatsServer,
    ServiceProcess,
    admin_headers,
    base_service_env,
    free_port,
    setup_services,
)
from tests.faults.chaos import (
    RETRY_SCHEDULE,
    WORKSPACE,
    ChaosReport,
    EventTally,
    count_dlq,
    count_stored,
    count_unlinkable,
    create_integration,
    delivered_so_far,
    send_meetings,
)

N = 2_000
SEED = 23
REPLICATED = ("gateway", "normalizer", "linker")
# Svix's schedule, compressed, plus a little more: a stream leader's election after its server
# dies takes seconds, and a real sender would keep retrying for hours.
CLUSTER_RETRY_SCHEDULE = (*RETRY_SCHEDULE, 5.0, 5.0)


class Cluster:
    """Three routed NATS servers, one PostgreSQL, two replicas of each stateless service, one scheduler."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=False)  # PostgreSQL is not a victim here
        ports, routes = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
        self.nats = [
            NatsServer(
                base / "js" / f"n{i + 1}",
                port=ports[i],
                name=f"nats-{i + 1}",
                cluster_port=routes[i],
                routes=tuple(p for j, p in enumerate(routes) if j != i),
            )
            for i in range(3)
        ]
        self.procs: dict[str, list[ServiceProcess]] = {}
        self.env: dict[str, str] = {}

    @property
    def nats_urls(self) -> list[str]:
        return [s.url for s in self.nats if s.process is not None]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.procs[service] if p.process is not None]

    def admin(self, service: str) -> dict[str, str]:
        return admin_headers(self.env, service)

    async def start(self) -> None:
        self.pg.start()
        for server in self.nats:
            server.start()
        conn = await asyncpg.connect(self.pg.dsn())
        try:
            await conn.execute("create database callstream")
        finally:
            await conn.close()
        self.env = base_service_env(self.pg.dsn("callstream"), ",".join(self.nats_urls))
        self.env["CALLSTREAM_STREAM_REPLICAS"] = "3"
        # The first setup may run before the routes are up and a meta leader is elected: it is retried.
        await asyncio.to_thread(setup_services, self.env, attempts=10)
        for name in (*REPLICATED, "scheduler"):
            copies = 2 if name in REPLICATED else 1
            self.procs[name] = [ServiceProcess.named(name, self.env, self.base / "logs").start() for _ in range(copies)]
        for procs in self.procs.values():
            for proc in procs:
                await asyncio.to_thread(proc.wait_ready, 90)

    async def stop(self) -> None:
        every = [p for procs in self.procs.values() for p in procs]
        for proc in every:
            proc.terminate()
        for proc in every:
            await asyncio.to_thread(proc.stop)
        for server in self.nats:
            server.stop()
        self.pg.stop("immediate")

    async def check_r3(self) -> None:
        """Every stream has three replicas, one on each server."""
        nc = await nats.connect(self.nats_urls, connect_timeout=2)
        try:
            infos = await nc.jetstream(timeout=5).streams_info()
        finally:
            await nc.close()
        assert {i.config.name for i in infos} >= {spec.name for spec in STREAMS}  # and the checkpoint KV bucket
        for info in infos:
            assert info.config.num_replicas == 3, info.config.name
            assert info.cluster is not None, info.config.name
            assert info.cluster.leader, info.config.name
            assert len(info.cluster.replicas or []) == 2, info.config.name

    async def calls_raw_leader(self) -> str:
        """The server leading ``CALLS_RAW`` now (asked again while a loaded cluster is slow to answer)."""
        nc = await nats.connect(self.nats_urls, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=5)
            for _ in range(20):
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    info = await js.stream_info("CALLS_RAW")
                    if info.cluster is not None and info.cluster.leader:
                        return info.cluster.leader
                await asyncio.sleep(0.5)
        finally:
            await nc.close()
        raise AssertionError("CALLS_RAW has no leader")

    async def kill_nats(self, report: ChaosReport, started: float) -> None:
        """SIGKILL the server leading ``CALLS_RAW`` (the one every webhook's publish goes through)."""
        leader = await self.calls_raw_leader()
        victim = next(s for s in self.nats if s.name == leader)
        victim.kill()
        report.faults.append(f"{time.monotonic() - started:.1f}s SIGKILL {victim.name} (CALLS_RAW leader)")

    def kill_replica(self, service: str, rng: random.Random, report: ChaosReport, started: float) -> None:
        index = rng.randrange(2)
        self.procs[service][index].kill()
        report.faults.append(f"{time.monotonic() - started:.1f}s SIGKILL {service} replica {index + 1}")


async def inflict_faults(cluster: Cluster, report: ChaosReport, rng: random.Random) -> None:
    """One SIGKILL per victim, each once a seeded share (10 to 80 %) of the meetings has been acked."""
    plan = ["nats", *REPLICATED]
    rng.shuffle(plan)
    thresholds = sorted(int(rng.uniform(0.1, 0.8) * N) for _ in plan)
    started = time.monotonic()
    for threshold, victim in zip(thresholds, plan, strict=True):
        while delivered_so_far(report) < threshold:
            await asyncio.sleep(0.05)
        if victim == "nats":
            await cluster.kill_nats(report, started)
        else:
            cluster.kill_replica(victim, rng, report, started)


class LiveSubscriber:
    """An internal subscriber with its own durable consumer, counting events as they come, through
    the loss of a NATS server (errors while the cluster re-elects are retried, not fatal)."""

    DURABLE = "cluster-subscriber"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.tally = EventTally()
        self.done = asyncio.Event()

    async def run(self) -> None:
        nc = await nats.connect(self.cluster.nats_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        try:
            js = nc.jetstream(timeout=5)
            config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=10)
            sub = await js.pull_subscribe("messages.upserted.>", durable=self.DURABLE, stream="MESSAGES", config=config)
            while not self.done.is_set():
                try:
                    batch = await sub.fetch(200, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.Error:
                    await asyncio.sleep(0.5)
                    continue
                for msg in batch:
                    self.tally.add(msg.metadata.sequence.stream, msg.data)
                    with contextlib.suppress(nats.errors.Error):
                        await msg.ack()
        finally:
            await nc.close()

    async def caught_up(self, timeout: float) -> bool:
        """The consumer has nothing left to deliver and nothing awaiting an ack."""
        deadline = time.monotonic() + timeout
        nc = await nats.connect(self.cluster.nats_urls)
        try:
            js = nc.jetstream(timeout=5)
            while time.monotonic() < deadline:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    info = await js.consumer_info("MESSAGES", self.DURABLE)
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        return True
                await asyncio.sleep(0.25)
        finally:
            await nc.close()
        return False


class LinkReader:
    """Resolves links of stored messages through both linkers while the sender runs, as a load
    balancer would: a replica that refuses the connection is skipped for the other one."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.lookups = 0
        self.failed: list[str] = []
        self.done = asyncio.Event()

    async def run(self) -> None:
        conn = await asyncpg.connect(self.cluster.pg.dsn("callstream"))
        try:
            async with httpx.AsyncClient(headers=self.cluster.admin("linker"), timeout=10) as client:
                turn = 0
                while not self.done.is_set():
                    rows = await conn.fetch(
                        "select id from messages where workspace_id = $1 order by random() limit 50", WORKSPACE
                    )
                    if rows:
                        turn += 1
                        await self._resolve(client, [str(r["id"]) for r in rows], turn)
                    await asyncio.sleep(0.2)
        finally:
            await conn.close()

    async def _resolve(self, client: httpx.AsyncClient, ids: list[str], turn: int) -> None:
        linkers = [p.url for p in self.cluster.procs["linker"]]
        errors = []
        for k in range(len(linkers)):
            url = linkers[(turn + k) % len(linkers)]
            try:
                r = await client.post(f"{url}/v1/links/resolve", json={"message_ids": ids})
            except httpx.TransportError as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            self.lookups += 1
            links = r.json().get("links", {}) if r.status_code == 200 else {}
            if r.status_code != 200 or any(not (links.get(i) or {}).get("url") for i in ids):
                self.failed.append(f"{url}: {r.status_code} {r.text[:200]}")
            return
        self.failed.append("no linker answered: " + "; ".join(errors))


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="callstream-cluster-"))
    running = Cluster(base)
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(420)
async def test_a_three_server_cluster_loses_a_server_and_a_replica_of_each_service_under_load(
    cluster: Cluster,
) -> None:
    started = time.monotonic()
    await cluster.check_r3()
    integration_id, secret = await create_integration(cluster.urls("gateway")[0], cluster.admin("gateway"))
    report = ChaosReport()
    subscriber, reader = LiveSubscriber(cluster), LinkReader(cluster)
    background = [asyncio.create_task(subscriber.run()), asyncio.create_task(reader.run())]
    try:
        faults = asyncio.create_task(inflict_faults(cluster, report, random.Random(SEED)))
        acked = await send_meetings(
            cluster.urls("gateway"),  # both, for the whole run: the load balancer learns of a death by trying
            integration_id,
            secret,
            N,
            report,
            retry_schedule=CLUSTER_RETRY_SCHEDULE,
        )
        await faults
        await count_stored(cluster.pg.dsn("callstream"), acked, report, settle_seconds=90)
        assert await subscriber.caught_up(timeout=60), "the subscriber's consumer never drained"
    finally:
        subscriber.done.set()
        reader.done.set()
        await asyncio.gather(*background)
    subscriber.tally.count_into(acked, report)
    nc = await nats.connect(cluster.nats_urls)
    try:
        await count_dlq(nc.jetstream(timeout=5), report)
    finally:
        await nc.close()
    survivors = cluster.urls("linker")
    assert len(survivors) == 1
    await count_unlinkable(cluster.pg.dsn("callstream"), survivors[0], cluster.admin("linker"), report)
    report.wall_seconds = round(time.monotonic() - started, 1)

    summary = {**report.as_dict(), "link_lookups": reader.lookups, "link_lookup_failures": reader.failed[:5]}
    print(summary)
    assert len(report.faults) == 4, summary
    assert len(cluster.nats_urls) == 2, summary
    assert all(len(cluster.urls(s)) == 1 for s in REPLICATED), summary
    assert report.acked == N, summary  # the sender's retries on the other replica outlast every fault
    assert report.lost == 0, summary
    assert report.duplicates == 0, summary
    assert report.stored == N, summary
    assert report.created_events == N, summary
    assert report.duplicate_events == 0, summary
    assert report.missing_events == 0, summary
    assert report.dlq == 0, summary
    assert report.unlinkable == 0, summary
    assert reader.lookups > 0, summary
    assert not reader.failed, summary
