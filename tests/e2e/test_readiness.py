"""Every service reports the truth about its dependencies: /health/ready turns 503 within 5 s of
PostgreSQL or NATS going away and 200 again once they are back, without a restart."""

import asyncio
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from callstream.devstack import SERVICES, EmbeddedPostgres, NatsServer, ServiceProcess, base_service_env, setup_services

DEADLINE_SECONDS = 5.0


async def _create_database(pg: EmbeddedPostgres) -> str:
    conn = await asyncpg.connect(pg.dsn())
    try:
        await conn.execute("create database callstream")
    finally:
        await conn.close()
    return pg.dsn("callstream")


def _statuses(procs: list[ServiceProcess]) -> dict[str, int]:
    out = {}
    for proc in procs:
        try:
            out[proc.service.name] = httpx.get(f"{proc.url}/health/ready", timeout=1.0).status_code
        except httpx.HTTPError:
            out[proc.service.name] = 0
    return out


def _until(procs: list[ServiceProcess], status: int, timeout: float) -> float:
    """Seconds until every service answers ``status``; fails the test past ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(code == status for code in _statuses(procs).values()):
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"not all {status} after {timeout}s: {_statuses(procs)}")


def test_readiness_follows_postgres_and_nats(
    own_postgres: EmbeddedPostgres, own_nats: NatsServer, start_service: Callable[..., ServiceProcess]
) -> None:
    env = base_service_env(asyncio.run(_create_database(own_postgres)), own_nats.url)
    setup_services(env)
    procs = [start_service(s.name, env) for s in SERVICES]
    assert _statuses(procs) == {s.name: 200 for s in SERVICES}
    for proc in procs:
        metrics = httpx.get(f"{proc.url}/metrics", timeout=2.0)
        assert metrics.status_code == 200
        assert "# TYPE" in metrics.text
        assert httpx.get(f"{proc.url}/health/live", timeout=2.0).status_code == 200

    own_postgres.stop("immediate")
    assert _until(procs, 503, DEADLINE_SECONDS) <= DEADLINE_SECONDS
    anonymous = httpx.get(f"{procs[0].url}/health/ready", timeout=2.0)
    body = anonymous.json()
    # A stranger learns ready or not and which check fails, never the error's text (the
    # database's host, port, user or name).
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "failing"
    assert body["checks"]["broker"] == "ok"
    assert set(body["checks"].values()) <= {"ok", "degraded", "failing"}
    for leak in ("127.0.0.1", str(own_postgres.port), "callstream", "Error"):
        assert leak not in anonymous.text, leak
    # The service's own admin token (the gateway here) sees the details, and so does its log.
    gateway = procs[0]
    assert gateway.service.name == "gateway"
    admin = {"Authorization": f"Bearer {env['CALLSTREAM_GATEWAY_ADMIN_TOKEN']}"}
    detailed = httpx.get(f"{gateway.url}/health/ready", headers=admin, timeout=2.0).json()
    assert detailed["checks"]["database"] not in ("ok", "failing")
    assert detailed["checks"]["broker"] == "ok"
    other = {"Authorization": f"Bearer {env['CALLSTREAM_LINKER_ADMIN_TOKEN']}"}
    assert set(httpx.get(f"{gateway.url}/health/ready", headers=other, timeout=2.0).json()["checks"].values()) <= {
        "ok",
        "degraded",
        "failing",
    }
    logged = [line for line in gateway.log(400).splitlines() if '"readiness"' in line and '"not_ready"' in line]
    assert any('"database"' in line for line in logged), logged
    own_postgres.start()
    _until(procs, 200, 30.0)

    own_nats.stop()
    assert _until(procs, 503, DEADLINE_SECONDS) <= DEADLINE_SECONDS
    assert httpx.get(f"{procs[0].url}/health/ready", timeout=2.0).json()["checks"]["broker"] != "ok"
    own_nats.start()
    _until(procs, 200, 30.0)

    for proc in procs:
        assert proc.stop() == 0, proc.log()  # SIGTERM is a clean exit
