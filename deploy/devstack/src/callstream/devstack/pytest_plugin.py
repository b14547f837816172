"""pytest fixtures on real servers: embedded PostgreSQL and NATS JetStream started once per
session (or testcontainers' with ``CALLSTREAM_TEST_SERVERS=containers``), a fresh migrated database
per test, and fresh streams per test. Tests are tiered by folder: ``unit/``, ``integration/``,
``e2e/``, ``faults/``, ``cluster/``; a test outside those folders must carry a tier marker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ._process import ServiceProcess, base_service_env
from ._servers import EmbeddedPostgres, NatsServer, free_port
from ._services import migrate_all

TIERS = ("unit", "integration", "e2e", "faults", "cluster")
TEMPLATE_DB = "callstream_template"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in TIERS:
            if tier in parts and not item.get_closest_marker(tier):
                item.add_marker(getattr(pytest.mark, tier))
        if not any(item.get_closest_marker(t) for t in TIERS):
            raise pytest.UsageError(f"{item.nodeid}: put it under unit/, integration/ or e2e/, or mark its tier")


@dataclass
class TestServers:
    postgres_dsn: str  # the superuser DSN of the "postgres" database
    nats_url: str
    postgres: EmbeddedPostgres | None = None
    nats: NatsServer | None = None

    def dsn(self, database: str) -> str:
        return self.postgres_dsn.rsplit("/", 1)[0] + "/" + database


# nats-server's log line for a denied publish or subscribe by a named client (a service names its
# connection; the tests' own clients, which provoke violations on purpose, do not).
_SERVICE_VIOLATION = re.compile(
    r'"v[^"]*:[^":]+:(?P<client>[^"]+)" - "[^"]*user:(?P<user>[^"]+)" - (?P<what>\w+ Violation) - (?P<detail>.*)'
)


def _service_violations(log_file: Path) -> list[str]:
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return []
    found = {f"{m['user']} ({m['client']}): {m['what']} {m['detail']}" for m in _SERVICE_VIOLATION.finditer(text)}
    return sorted(found)


@contextlib.contextmanager
def _embedded(base: Path) -> Iterator[TestServers]:
    pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=False)
    nats = NatsServer(base / "js", port=free_port(), name="test-nats")
    pg.start()
    try:
        nats.start()
        try:
            yield TestServers(pg.dsn(), nats.url, pg, nats)
        finally:
            nats.stop()
            # A service refused by its NATS permissions somewhere in the session: the table
            # (contracts' nats_permissions) misses something it does. Said at the end of the run.
            for line in _service_violations(nats.log_file):
                warnings.warn(f"NATS permissions refused a service: {line}", stacklevel=1)
    finally:
        pg.stop("immediate")


@contextlib.contextmanager
def _containers() -> Iterator[TestServers]:  # pragma: no cover - needs a Docker engine
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", username="postgres", password="postgres") as pg:  # noqa: S106 - a throwaway test container
        nats = DockerContainer("nats:2.10-alpine").with_command("-js").with_exposed_ports(4222)
        with nats:
            wait_for_logs(nats, "Server is ready")
            url = f"nats://{nats.get_container_host_ip()}:{nats.get_exposed_port(4222)}"
            dsn = pg.get_connection_url(driver=None).replace("postgresql+psycopg2", "postgresql")
            yield TestServers(dsn.rsplit("/", 1)[0] + "/postgres", url)


def _server_dir() -> Path:
    """Outside pytest's own (private) temp tree: as root, PostgreSQL runs as nobody and must read it."""
    return Path(tempfile.mkdtemp(prefix="callstream-test-"))


@pytest.fixture(scope="session")
def test_servers() -> Iterator[TestServers]:
    mode = os.environ.get("CALLSTREAM_TEST_SERVERS", "embedded")
    if mode == "containers":
        with _containers() as servers:
            yield servers
    elif mode == "embedded":
        base = _server_dir()
        try:
            with _embedded(base) as servers:
                yield servers
        finally:
            shutil.rmtree(base, ignore_errors=True)
    else:
        raise pytest.UsageError("CALLSTREAM_TEST_SERVERS is embedded (the default) or containers")


async def _migrate_template(servers: TestServers) -> None:

    admin = await asyncpg.connect(servers.postgres_dsn)
    try:
        await admin.execute(f"drop database if exists {TEMPLATE_DB}")
        await admin.execute(f"create database {TEMPLATE_DB}")
    finally:
        await admin.close()
    await migrate_all(servers.dsn(TEMPLATE_DB))


@pytest.fixture(scope="session")
def migrated_template(test_servers: TestServers) -> str:
    """Every service's migrations applied once; each test copies it (much faster than migrating)."""
    asyncio.run(_migrate_template(test_servers))
    return TEMPLATE_DB


@pytest.fixture
async def database_url(test_servers: TestServers, migrated_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(test_servers.postgres_dsn)
    try:
        await admin.execute(f"create database {name} template {migrated_template}")
    finally:
        await admin.close()
    yield test_servers.dsn(name)
    admin = await asyncpg.connect(test_servers.postgres_dsn)
    try:
        await admin.execute(f"drop database if exists {name} with (force)")
    finally:
        await admin.close()


@pytest.fixture
def nats_url(test_servers: TestServers) -> str:
    return test_servers.nats_url


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[object]:
    """The contracts' streams and consumers, created empty for this test."""
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await declare_fresh_streams(js)
    try:
        yield js
    finally:
        await nc.close()


_STORE_NOT_CREATED = 10049


async def declare_fresh_streams(js: Any) -> None:
    """Delete every stream, then declare the contracts' streams and consumers again.

    nats-server can still be removing a deleted stream's files when it is created again, and
    then answers 10049 "error creating store for stream" (seen once, in a CI run under load):
    that answer is retried for a while; any other error is raised at once."""
    from nats.js.errors import ServerError
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_fixed

    from callstream.runtime import ensure_all

    for name in [s.config.name for s in await js.streams_info() if s.config.name]:
        await js.delete_stream(name)
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, ServerError) and exc.err_code == _STORE_NOT_CREATED),
        stop=stop_after_delay(10),
        wait=wait_fixed(0.1),
        reraise=True,
    ):
        with attempt:
            await ensure_all(js)


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, for tests that stop and start it."""
    base = _server_dir()
    pg = EmbeddedPostgres(base / "pg", port=free_port(), durable=False)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of this test's own, for tests that stop and start it."""
    server = NatsServer(tmp_path / "own-js", port=free_port(), name="own-nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service_env(database_url: str, nats_url: str) -> dict[str, str]:
    """The environment a service process needs against this test's database and NATS."""
    return base_service_env(database_url, nats_url)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_service("normalizer", env)`` starts a real service process (ready when it returns);
    every process still running is stopped after the test, and its log printed if the test failed."""
    started: list[ServiceProcess] = []

    def start(name: str, env: dict[str, str], *, wait: bool = True) -> ServiceProcess:
        proc = ServiceProcess.named(name, env, tmp_path / "logs").start()
        started.append(proc)
        return proc.wait_ready() if wait else proc

    yield start
    for proc in started:
        proc.terminate()  # all at once: each has its own grace period
    for proc in started:
        proc.stop()
