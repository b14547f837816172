"""A gateway SIGKILLed in the middle of a scheduled Gong backfill: JetStream hands the run to the
gateway that replaces it once the dead one's lease (the pull consumer's ack_wait) runs out, the run
resumes from its checkpoint, and the scheduler records one run that finished with every call stored once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import asyncpg
import httpx

from callstream.contracts import GATEWAY_PULL_CONSUMER
from callstream.devstack import ServiceProcess, admin_headers
from tests.e2e.conftest import Subscriber, eventually
from tests.fakes import serve_in_process
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

CALLS = 1_200  # 12 pages of /v2/calls/extensive, each followed by its transcripts
DELAY = 0.4  # seconds the fake waits before every answer: the run takes ~10 s, long enough to kill it


async def _runs(scheduler: httpx.AsyncClient, integration_id: str) -> list[dict]:
    r = await scheduler.get(f"/v1/integrations/{integration_id}/syncs")
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_a_killed_gateway_mid_run_is_recovered_and_the_run_finishes(
    service_env: dict[str, str],
    database_url: str,
    nats_url: str,
    jetstream: object,
    start_service: Callable[..., ServiceProcess],
) -> None:
    env = {**service_env, "CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS": "400", "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1"}
    procs = {name: start_service(name, env, wait=False) for name in ("gateway", "normalizer", "linker", "scheduler")}
    for proc in procs.values():
        await asyncio.to_thread(proc.wait_ready)
    gong = GongState(GongConfig(seed=21, calls=CALLS, span_days=200))
    gong.faults.limits_enabled = False
    gong.faults.delay_seconds = DELAY
    async with (
        serve_in_process(gong_app(gong)) as gong_url,
        httpx.AsyncClient(
            base_url=procs["scheduler"].url, headers=admin_headers(env, "scheduler"), timeout=10
        ) as scheduler,
        Subscriber(nats_url, durable="killed-gateway-subscriber") as subscriber,
    ):
        async with httpx.AsyncClient(
            base_url=procs["gateway"].url, headers=admin_headers(env, "gateway"), timeout=10
        ) as gateway:
            r = await gateway.post(
                "/v1/integrations",
                json={
                    "workspace_id": "killed-gateway",
                    "provider": "gong",
                    "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                    "base_url": gong_url,
                },
            )
        assert r.status_code == 201, r.text
        integration_id = r.json()["id"]

        async def partway() -> dict | None:
            runs = await _runs(scheduler, integration_id)
            return runs[0] if runs and runs[0]["status"] == "running" and runs[0]["pages"] >= 2 else None

        run = await eventually(partway, timeout=60, interval=0.2)
        procs["gateway"].kill()
        killed_at = asyncio.get_running_loop().time()
        pages_before_kill = run["pages"]
        assert pages_before_kill < CALLS // 100, run  # the run really was cut short
        requests_before_kill = len(gong.log.api())
        start_service("gateway", env)  # the replacement: it waits for the dead one's lease to run out

        async def finished() -> dict | None:
            runs = await _runs(scheduler, integration_id)
            return runs[0] if runs and runs[0]["finished_at"] else None

        timeout = GATEWAY_PULL_CONSUMER.ack_wait_seconds + 60
        done = await eventually(finished, timeout=timeout, interval=0.5)
        recovered_in = asyncio.get_running_loop().time() - killed_at

        runs = await _runs(scheduler, integration_id)
        assert [r["run_id"] for r in runs] == [run["run_id"]], runs  # the same run finished; none was restarted
        assert done["status"] == "success", done
        assert done["calls_published"] == CALLS, done
        state = (await scheduler.get(f"/v1/integrations/{integration_id}/sync-state")).json()
        assert state["status"] == "success", state
        assert state["watermark"] is not None, state

        # resumed from its checkpoint: the pages done before the kill were not asked for again
        # (the page in flight at the kill may be, once, with its transcripts)
        extensive_after = [e for e in gong.log.api()[requests_before_kill:] if e.path == "/v2/calls/extensive"]
        assert len(extensive_after) <= CALLS // 100 - pages_before_kill + 1, len(extensive_after)

        async def all_stored() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return await conn.fetchval("select count(*) from messages where source = 'gong'") == CALLS
            finally:
                await conn.close()

        await eventually(all_stored, timeout=60, interval=0.5)
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("select external_id, count(*) as n from messages group by external_id")
        finally:
            await conn.close()
        assert {r["external_id"] for r in rows} == set(gong.index.ids)
        assert max(r["n"] for r in rows) == 1

        async def every_event() -> list[dict] | None:
            events = await subscriber.drain()
            return events if len(events) >= CALLS else None

        await eventually(every_event, timeout=60, interval=0.5)
        await asyncio.sleep(1.0)  # a late duplicate would arrive now
        events = await subscriber.drain()
        created = Counter(e["external_id"] for e in events if e["change"] == "created")
        assert set(created) == set(gong.index.ids)
        assert max(created.values()) == 1, Counter(created.values())
        print({"pages_before_kill": pages_before_kill, "recovered_in_seconds": round(recovered_in, 1)})
