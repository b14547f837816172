"""Pulls on real processes while providers are down (issue #17, item 4).

Ten tenants whose provider refuses connections ask for backfills, then a healthy tenant asks for
its latest 5 meetings: they are stored within 10 s, and the scheduler still sees the dead runs
alive and waiting. Two gateway replicas pulling for one Fathom account keep its per-minute limits
together (scaled to a 2-second window).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from callstream.devstack import ServiceProcess, admin_headers
from tests.e2e.conftest import eventually
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app

DEAD = 10


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but never listening: every connection to it is refused at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def _env(service_env: dict[str, str], **pull: str) -> dict[str, str]:
    # The due loop ticks at start, then not again within the test: every run is asked for here.
    env = {**service_env, "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "60"}
    env.update({f"CALLSTREAM_GATEWAY_PULL_{k.upper()}": v for k, v in pull.items()})
    return env


async def _integration(gateway: httpx.AsyncClient, workspace: str, base_url: str, api_key: str) -> str:
    r = await gateway.post(
        "/v1/integrations",
        json={
            "workspace_id": workspace,
            "provider": "fathom",
            "credentials": {"api_key": api_key},
            "base_url": base_url,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _sync(scheduler: httpx.AsyncClient, integration_id: str, **body: Any) -> str:
    r = await scheduler.post(f"/v1/integrations/{integration_id}/syncs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def _stored(database_url: str, workspace: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("select count(*) from messages where workspace_id = $1", workspace))
    finally:
        await conn.close()


async def test_a_healthy_latest_5_is_stored_within_10s_behind_ten_dead_providers(
    service_env: dict[str, str],
    database_url: str,
    jetstream: object,
    refused_port: int,
    start_service: Callable[..., ServiceProcess],
) -> None:
    env = _env(service_env)
    procs = {name: start_service(name, env, wait=False) for name in ("gateway", "normalizer", "scheduler")}
    for proc in procs.values():
        await asyncio.to_thread(proc.wait_ready)
    fathom = FathomState(FathomConfig(seed=41, meetings=30, span_days=30))
    async with (
        serve_in_process(create_app(fathom)) as fathom_url,
        httpx.AsyncClient(base_url=procs["gateway"].url, headers=admin_headers(env, "gateway"), timeout=10) as gateway,
        httpx.AsyncClient(
            base_url=procs["scheduler"].url, headers=admin_headers(env, "scheduler"), timeout=10
        ) as scheduler,
    ):
        dead_url = f"http://127.0.0.1:{refused_port}/external/v1"
        dead = [await _integration(gateway, f"dead-{i}", dead_url, f"dead-key-{i}") for i in range(DEAD)]
        for integration in dead:
            await _sync(scheduler, integration, mode="backfill")
        await asyncio.sleep(0.5)  # the dead runs are being tried
        healthy = await _integration(gateway, "healthy", fathom_url + "/external/v1", "fathom-test-key")
        asked = time.monotonic()
        await _sync(scheduler, healthy, mode="latest", limit=5)

        async def five() -> bool:
            return await _stored(database_url, "healthy") >= 5

        await eventually(five, timeout=20, interval=0.1)
        took = time.monotonic() - asked
        print({"latest_5_stored_after_seconds": round(took, 2)})
        assert took <= 10.0, took
        assert await _stored(database_url, "healthy") == 5

        async def finished() -> dict | None:
            r = await scheduler.get(f"/v1/integrations/{healthy}/syncs")
            runs = r.json()["items"]
            return runs[0] if runs and runs[0]["finished_at"] else None

        run = await eventually(finished, timeout=10, interval=0.2)
        assert run["status"] == "success", run
        assert run["calls_published"] == 5, run

        # the dead runs are alive to the scheduler: released, with when they go on and why
        async def waiting() -> list[dict] | None:
            found = []
            for integration in dead:
                runs = (await scheduler.get(f"/v1/integrations/{integration}/syncs")).json()["items"]
                found += [r for r in runs if r["resume_after"] and not r["finished_at"]]
            return found if len(found) == DEAD else None

        released = await eventually(waiting, timeout=15, interval=0.3)
        assert all(r["waiting_for"] for r in released), released
        metrics = (await gateway.get("/metrics")).text
        host = f"http://127.0.0.1:{refused_port}"
        assert f'callstream_gateway_pull_breaker_state{{host="{host}"}} 2.0' in metrics
        assert 'callstream_gateway_pull_runs_released_total{provider="fathom",reason="provider_unavailable"}' in metrics
        assert fathom.log.api(), "the healthy provider was asked"


async def test_two_gateway_replicas_keep_one_fathom_accounts_limits_together(
    service_env: dict[str, str],
    database_url: str,
    jetstream: object,
    start_service: Callable[..., ServiceProcess],
) -> None:
    # One run per replica (one slot each); Fathom's 60 and 30 heavy a minute scaled to 6 and 3 per 2 s.
    env = _env(
        service_env,
        concurrency="1",
        fathom_requests_per_window="6",
        fathom_heavy_per_window="3",
        fathom_window_seconds="2.0",
    )
    procs = [start_service("gateway", env, wait=False) for _ in range(2)]
    procs.append(start_service("scheduler", env, wait=False))
    for proc in procs:
        await asyncio.to_thread(proc.wait_ready)
    fathom = FathomState(FathomConfig(seed=42, meetings=60, span_days=30))
    fathom.faults.limits_enabled = False  # only the replicas' own limits keep the window
    fathom.faults.delay_seconds = 0.2  # each run outlasts the other's start: both replicas pull at once
    async with (
        serve_in_process(create_app(fathom)) as fathom_url,
        httpx.AsyncClient(base_url=procs[0].url, headers=admin_headers(env, "gateway"), timeout=10) as gateway,
        httpx.AsyncClient(base_url=procs[2].url, headers=admin_headers(env, "scheduler"), timeout=10) as scheduler,
    ):
        # two tenants on one Fathom account (one API key)
        tenants = [
            await _integration(gateway, f"shared-{i}", fathom_url + "/external/v1", "fathom-test-key") for i in range(2)
        ]
        for integration in tenants:
            await _sync(scheduler, integration, mode="backfill")

        async def both_done() -> bool:
            for integration in tenants:
                runs = (await scheduler.get(f"/v1/integrations/{integration}/syncs")).json()["items"]
                if not runs or not runs[0]["finished_at"]:
                    return False
                assert runs[0]["status"] == "success", runs[0]
            return True

        await eventually(both_done, timeout=60, interval=0.3)
    served = fathom.log.api()
    heavy = [e.at for e in served if e.heavy]
    window = 2.0
    busiest = max(sum(1 for t in heavy if s <= t < s + window) for s in heavy)
    busiest_all = max(sum(1 for t in (e.at for e in served) if s <= t < s + window) for s in (e.at for e in served))
    print({"requests": len(served), "heavy": len(heavy), "busiest_heavy_2s": busiest, "busiest_2s": busiest_all})
    assert len(heavy) >= 12  # 6 pages and more per tenant
    for replica in procs[:2]:  # each replica pulled one of the runs
        assert "pull run started" in replica.log(lines=100_000), replica.log()
    assert busiest <= 3
    assert busiest_all <= 6
