"""What every service process holds: a PostgreSQL pool, a NATS broker, background workers, and
the readiness checks built from them; plus the command line that serves, migrates and sets up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import uvicorn
import uvloop
from litestar import Litestar

from ._broker import Broker, NatsAuth
from ._http import Check
from ._limits import BodyDeadline, HttpLimits, uvicorn_protocol
from ._logging import configure_logging, get_logger
from ._migrations import migrate
from ._postgres import check_postgres, create_pool, wait_for_postgres
from ._rsgi import AsgiOverRsgi
from ._settings import DEFAULT_SHUTDOWN_SECONDS, HttpServer, ServiceSettings
from ._streams import ensure_all
from ._supervisor import DEFAULT_HEALTHY_AFTER_SECONDS, RestartPolicy, Supervisor, wait_or_stop
from ._tracing import endpoint_from, tracing

log = get_logger(__name__)

Worker = Callable[["ServiceRuntime"], Awaitable[None]]


class ServiceRuntime:
    """Connections and background work of one process. Nothing here blocks on a server being up:
    the pool connects on demand and the broker retries in the background."""

    def __init__(self, settings: ServiceSettings, *, database_url: str | None = None, pool_max: int = 10) -> None:
        self.settings = settings
        self._database_url = database_url or settings.database_url.get_secret_value()
        self._pool_max = pool_max
        self.pool: asyncpg.Pool | None = None
        self.broker = Broker(
            settings.nats_url,
            settings.service_name,
            connect_timeout=settings.connect_timeout_seconds,
            auth=NatsAuth.from_settings(settings),
        )
        self.stopping = asyncio.Event()
        self.supervisor = Supervisor(
            settings.service_name,
            self.stopping,
            grace_seconds=settings.worker_grace_seconds,
            # Running half the grace period after a restart clears "down": a worker that failed
            # once and came back never flips readiness, one failing on every restart does.
            policy=RestartPolicy(
                max_delay=settings.worker_restart_max_seconds,
                healthy_after=min(DEFAULT_HEALTHY_AFTER_SECONDS, settings.worker_grace_seconds / 2),
            ),
        )
        self._helpers: list[asyncio.Task[None]] = []

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the runtime is not started")
        return self.pool

    def add_worker(self, name: str, worker: Worker, *, critical: bool = True) -> None:
        """A background worker: started with the service, restarted by the supervisor whenever it
        fails or returns early, and given the shutdown grace period to finish at a stop. It runs
        until ``stopping`` is set and lets anything it cannot handle escape (see ``_supervisor``).
        ``critical=False``: the service answers without it, so while it is down readiness notes it
        (``optional_workers``) without answering 503."""
        self.supervisor.add(name, worker, critical=critical)

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking at once at a stop; True when the service is stopping."""
        return await wait_or_stop(self.stopping, seconds)

    def checks(self) -> Mapping[str, Check]:
        return {
            "database": lambda: check_postgres(self.db),
            "broker": self.broker.check,
            "workers": self.supervisor.check,
            "optional_workers": self.supervisor.degraded,
        }

    async def start(self) -> None:
        self.pool = await create_pool(self._database_url, max_size=self._pool_max)
        self.broker.start()
        self._helpers.append(asyncio.create_task(wait_for_postgres(self.pool), name="postgres-wait"))
        self.supervisor.start(self)

    async def stop(self) -> None:
        """Stop taking work, give workers the grace period to finish what is in flight, then close."""
        self.stopping.set()
        await self.supervisor.stop(self.settings.shutdown_seconds)
        for task in self._helpers:
            task.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        await self.broker.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), timeout=5)

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Litestar) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def serve_http(app: Litestar | AsgiOverRsgi, settings: ServiceSettings) -> None:
    """Serve ``app`` in this process until SIGTERM/SIGINT, then finish what is in flight, run the
    lifespan shutdown and exit 0. An :class:`AsgiOverRsgi` is served over RSGI on granian, and as
    its ASGI app on uvicorn."""
    serve_asgi(
        app,
        settings.host,
        settings.port,
        server=settings.http_server,
        shutdown_seconds=settings.shutdown_seconds,
        limits=settings.http_limits,
    )


def serve_asgi(
    app: Any,
    host: str,
    port: int,
    *,
    server: HttpServer = "uvicorn",
    shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
    limits: HttpLimits | None = None,
) -> None:
    """:func:`serve_http` without settings (benchmarks serve their ceilings with it). ``limits``:
    header and body read timeouts and the connection cap (see ``_limits``), the defaults if None."""
    limits = limits or HttpLimits()
    if server == "granian":
        uvloop.run(_serve_granian(app, host, port, shutdown_seconds, limits))
        return
    if isinstance(app, AsgiOverRsgi):
        app = app.app
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again under the handler
    # that was there before it; by then the in-flight work is done, so that is a clean exit (0),
    # not a death by signal that an orchestrator would report as a failure.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http=uvicorn_protocol(limits),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=int(shutdown_seconds),
    )


# granian logs through the root logger (so in the service's format), warnings and up.
_GRANIAN_LOGS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": False},
    },
}
_LISTEN_BACKLOG = 2048  # uvicorn's default; granian's 128 also caps its open connections


def _refuse_a_taken_port(host: str, port: int) -> None:
    """granian binds with SO_REUSEPORT, so a second server on the same port (a stale replica)
    would quietly share its traffic. Refuse the port as uvicorn does: a plain bind must succeed."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from a restart is fine
        try:
            probe.bind(address)
        except OSError as exc:
            log.error("cannot serve HTTP: the address is in use", host=host, port=port, error=exc.strerror)
            raise SystemExit(1) from None


async def _serve_granian(app: Any, host: str, port: int, shutdown_seconds: float, limits: HttpLimits) -> None:
    """granian's embedded server: requests are parsed and answers written by Rust threads, the app
    runs on this process's event loop. Still one process (a SIGKILL takes all of it, as with
    uvicorn), and for small answers about twice uvicorn's rate (``bench/linker``). granian calls
    this mode experimental: ``runtime/tests/e2e/test_serve_http.py`` holds it to what the services
    need (graceful SIGTERM, a bounded shutdown, failed starts and taken ports exit non-zero)."""
    from granian.asgi import LifespanProtocol
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    _refuse_a_taken_port(host, port)
    # granian runs the ASGI lifespan for its ASGI interface only; over RSGI it is ours to run.
    lifespan = LifespanProtocol(app.app) if isinstance(app, AsgiOverRsgi) else None  # type: ignore[no-untyped-call]
    if isinstance(app, AsgiOverRsgi):
        app.body_timeout = limits.body_timeout_seconds
    else:
        app = BodyDeadline(app, limits.body_timeout_seconds)
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI if lifespan is None else Interfaces.RSGI,
        http=HTTPModes.http1,
        websockets=False,
        backlog=_LISTEN_BACKLOG,
        # granian takes a connection only with a permit of these: the rest wait in the backlog.
        backpressure=limits.max_connections,
        http1_settings=HTTP1Settings(header_read_timeout=int(limits.header_timeout_seconds * 1000)),
        log_level=LogLevels.warning,
        log_dictconfig=_GRANIAN_LOGS,
    )
    loop = asyncio.get_running_loop()

    def give_up() -> None:
        # granian waits for every request in flight with no limit of its own; past the grace
        # period the orchestrator would SIGKILL us anyway, so say why and go.
        log.error("requests still in flight after the shutdown grace period, exiting", seconds=shutdown_seconds)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    def stop() -> None:
        if not server.interrupt_signal:
            loop.call_later(shutdown_seconds, give_up)
        server.stop()  # type: ignore[no-untyped-call]  # granian leaves it unannotated

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    if lifespan is not None:
        app.state = lifespan.state
        await lifespan.startup()  # type: ignore[no-untyped-call]
        if lifespan.interrupt:
            log.error("the app's lifespan start-up failed", error=repr(lifespan.exc))
            raise SystemExit(1)
    try:
        if not server.interrupt_signal:  # a SIGTERM during start-up leaves nothing to serve
            await server.serve()
    finally:
        if lifespan is not None:
            await lifespan.shutdown()  # type: ignore[no-untyped-call]
    if server.interrupt_children or not server.interrupt_signal:
        # The app's lifespan start-up failed or its worker died: granian returns as if stopped.
        log.error("the HTTP server stopped on its own (a failed start-up, or the app died)")
        raise SystemExit(1)


async def setup_streams(settings: ServiceSettings) -> None:
    broker = Broker(settings.nats_url, f"{settings.service_name}-setup", auth=NatsAuth.from_settings(settings))
    broker.start()
    try:
        await asyncio.wait_for(broker.wait_connected(), timeout=60)
        await ensure_all(broker.js, replicas=settings.stream_replicas)
    finally:
        await broker.close()


@dataclass(frozen=True, slots=True)
class Command:
    """A service-specific subcommand (e.g. the normalizer's ``dlq`` and ``replay``)."""

    help: str
    run: Callable[[Any, argparse.Namespace], Any]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


def service_main(
    *,
    prog: str,
    load: Callable[[], ServiceSettings],
    build_app: Callable[[Any], Litestar | AsgiOverRsgi],
    migrations: Path | None,
    commands: Mapping[str, Command] | None = None,
    argv: list[str] | None = None,
) -> None:
    """``prog [serve|migrate|setup|<command>]``: the same shape for every service."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("migrate", help="apply this service's database migrations and exit")
    sub.add_parser("setup", help="apply migrations and declare every JetStream stream and consumer, then exit")
    extra = dict(commands or {})
    for name, command in extra.items():
        p = sub.add_parser(name, help=command.help)
        if command.arguments is not None:
            command.arguments(p)
    args = parser.parse_args(argv)
    settings = load()
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    chosen = args.command or "serve"
    dsn = settings.database_url.get_secret_value()
    if chosen == "serve":
        # Traces only when the OTEL_* variables ask for them (see ``_tracing``); none otherwise.
        if tracing.configure(settings.service_name):
            log.info(
                "exporting traces over OTLP/HTTP",
                host=urlsplit(endpoint_from(os.environ) or "").netloc.rpartition("@")[2],
            )
        try:
            serve_http(build_app(settings), settings)
        finally:
            tracing.shutdown()
    elif chosen == "migrate":
        applied = asyncio.run(migrate(dsn, prog.removeprefix("callstream-"), migrations)) if migrations else []
        print(f"{prog}: {len(applied)} migrations applied")
    elif chosen == "setup":
        if migrations is not None:
            asyncio.run(migrate(dsn, prog.removeprefix("callstream-"), migrations))
        asyncio.run(setup_streams(settings))
        print(f"{prog}: database and streams are ready")
    else:
        result = extra[chosen].run(settings, args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        sys.exit(int(result or 0))
