"""``./dev up|down|status``: the whole stack on one machine, state under ``.run/``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from ._process import setup_services
from ._servers import EmbeddedPostgres, NatsServer, free_port, port_is_free, service_nats_env, wait_port
from ._services import (
    ADMIN_TOKEN_ENVS,
    CONSOLE,
    CONSOLE_ADMIN_TOKEN_ENV,
    SERVICES,
    console_env,
    new_admin_token,
    own_env,
)

READY_TIMEOUT_SECONDS = 90.0
JETSTREAM_READY_TIMEOUT_SECONDS = 60.0
DATABASE = "callstream"
# The gateway's default provider hosts (its CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS) plus the fakes on loopback.
DEV_ALLOWED_API_HOSTS = "api.fathom.ai,api.gong.io,*.api.gong.io,http://127.0.0.1"
DEV_RETURN_URL_ALLOW = "http://127.0.0.1,http://localhost"


@dataclass
class StackState:
    """What ``down`` and ``status`` need to find again: written to ``.run/state.json``."""

    pids: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    postgres: dict[str, str | int] | None = None
    nats: list[dict[str, str | int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _once(path: Path, make: Callable[[], str]) -> str:
    if path.is_file():
        return path.read_text().strip()
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class Stack:
    def __init__(self, root: Path, *, nats_cluster: int = 1, replicas: int = 1) -> None:
        self.root = root
        self.run = root / ".run"
        self.logs = self.run / "logs"
        self.state_file = self.run / "state.json"
        self.nats_cluster = nats_cluster
        self.replicas = replicas
        self.state = StackState()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.console_secrets: dict[str, str] = {}

    # ---- start -------------------------------------------------------------------------------
    def up(self, *, detach: bool) -> int:
        self.run.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        previous = StackState.load(self.state_file)
        if previous and any(_alive(p) for p in previous.pids.values()):
            print("a stack is already running here: ./dev status, or ./dev down first", file=sys.stderr)
            return 1
        # One admin token per service (.run/<service>_admin_token), kept across restarts; the
        # one token all services once shared is gone.
        admin_tokens = {
            s.admin_token_env: _once(self.run / f"{s.name}_admin_token", functools.partial(new_admin_token, s))
            for s in SERVICES
            if s.admin_token_env
        }
        (self.run / "admin_token").unlink(missing_ok=True)
        # The console's sign-in token and cookie key: given to the console alone (never in the
        # services' shared environment).
        self.console_secrets = {
            CONSOLE_ADMIN_TOKEN_ENV: _once(self.run / "console_admin_token", lambda: new_admin_token(CONSOLE)),
            "CALLSTREAM_CONSOLE_SESSION_SECRET": _once(self.run / "console_session_secret", secrets.token_urlsafe),
        }
        secret_key = _once(self.run / "secret_key", lambda: "k1:" + secrets.token_urlsafe(32))
        try:
            database_url = self._start_postgres(detach)
            nats_url = self._start_nats(detach)
            env = self._service_env(database_url, nats_url, admin_tokens, secret_key)
            self._setup(env)
            self._start_services(env, detach)
            self.state.save(self.state_file)
            self._write_env(env)
            failed = self._wait_ready()
        except BaseException:
            self.down(quiet=True)
            raise
        if failed:
            for name in failed:
                print(f"{name} did not become ready; last lines of {self.logs / (name + '.log')}:", file=sys.stderr)
                print(_tail(self.logs / f"{name}.log", 30), file=sys.stderr)
            self.down(quiet=True)
            return 1
        self._print_summary()
        if detach:
            return 0
        return self._follow_logs()

    def _start_postgres(self, detach: bool) -> str:
        external = os.environ.get("CALLSTREAM_DATABASE_URL")
        if external:
            print("using the PostgreSQL at CALLSTREAM_DATABASE_URL")
            return external
        pg = EmbeddedPostgres(self.run / "postgres", port=free_port(), durable=True)
        pg.start()
        self.state.postgres = {"base": str(pg.base), "port": pg.port}
        asyncio.run(_create_database(pg.dsn(), DATABASE))
        return pg.dsn(DATABASE)

    def _start_nats(self, detach: bool) -> str:
        external = os.environ.get("CALLSTREAM_NATS_URL")
        if external:
            print("using the NATS at CALLSTREAM_NATS_URL")
            return external
        n = self.nats_cluster
        ports = [free_port() for _ in range(n)]
        cluster_ports = [free_port() for _ in range(n)] if n > 1 else [None] * n
        servers = []
        for i in range(n):
            routes = tuple(p for j, p in enumerate(cluster_ports) if j != i and p is not None)
            server = NatsServer(
                store=self.run / "nats" / f"n{i + 1}",
                port=ports[i],
                name=f"nats-{i + 1}",
                cluster_port=cluster_ports[i],
                routes=routes,
                operator_password=self._nats_operator_password(),
            )
            pid = server.start(detach=True)
            self.state.pids[server.name] = pid
            self.state.nats.append({"name": server.name, "port": server.port})
            servers.append(server)
        if n > 1:
            # Streams with replicas can only be created once the routes are up and a meta leader
            # is elected; on a restart over existing state that takes several seconds.
            asyncio.run(_wait_jetstream([s.url for s in servers], JETSTREAM_READY_TIMEOUT_SECONDS))
        return ",".join(s.url for s in servers)

    @property
    def nats_operator_password_file(self) -> Path:
        return self.run / "nats_operator_password"

    def _nats_operator_password(self) -> str:
        """Kept across restarts, so tools holding ``.run/stack.env``'s URL keep working."""
        return _once(self.nats_operator_password_file, lambda: secrets.token_urlsafe(24))

    def _service_env(
        self, database_url: str, nats_url: str, admin_tokens: dict[str, str], secret_key: str
    ) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CALLSTREAM_ADMIN_TOKEN", None)  # retired: a service refuses to start with it set
        env.update(admin_tokens)
        env.update(
            CALLSTREAM_DATABASE_URL=database_url,
            CALLSTREAM_NATS_URL=nats_url,
            CALLSTREAM_SECRET_KEY=secret_key,
            CALLSTREAM_STREAM_REPLICAS=str(min(self.nats_cluster, 3)),
            CALLSTREAM_LOG_FORMAT=env.get("CALLSTREAM_LOG_FORMAT", "console"),
        )
        # A dev stack talks to the real providers or to the fakes (`python -m tests.fakes.*`) on loopback.
        env.setdefault("CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS", DEV_ALLOWED_API_HOSTS)
        # Connect sessions may end at the console or a product on this machine (plain http: loopback only).
        env.setdefault("CALLSTREAM_GATEWAY_RETURN_URL_ALLOW", DEV_RETURN_URL_ALLOW)
        for service in (*SERVICES, CONSOLE):
            port = service.default_port if port_is_free(service.default_port) else free_port()
            env[service.port_env] = str(port)
            env[service.url_env] = f"http://127.0.0.1:{port}"
        return env

    def _setup(self, env: dict[str, str]) -> None:
        # In a cluster a consumer restored from .run/ may still be electing its leader.
        setup_services(env, attempts=4 if self.nats_cluster > 1 else 1)

    def _start_services(self, env: dict[str, str], detach: bool) -> None:
        for service in SERVICES:
            copies = self.replicas if service.name in ("gateway", "normalizer", "linker") else 1
            for i in range(copies):
                name = service.name if i == 0 else f"{service.name}-{i + 1}"
                penv = own_env(service, env)
                penv = service_nats_env(service.name, penv)  # its own NATS identity, not the operator's
                if i > 0:
                    # Extra HTTP replicas listen on their own ports (a load balancer would front them).
                    penv[service.port_env] = str(free_port())
                self._spawn(name, service.command, penv, service.port_env)
        # The console calls the others over HTTP with their tokens under its own names.
        self._spawn(CONSOLE.name, CONSOLE.command, {**console_env(env), **self.console_secrets}, CONSOLE.port_env)

    def _spawn(self, name: str, command: str, penv: dict[str, str], port_env: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [_script(command), "serve"],
            env=penv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = proc
        self.state.pids[name] = proc.pid
        self.state.urls[name] = f"http://127.0.0.1:{penv[port_env]}"

    def _write_env(self, env: dict[str, str]) -> None:
        keys = [s.url_env for s in SERVICES] + [
            "CALLSTREAM_DATABASE_URL",
            "CALLSTREAM_NATS_URL",
            *ADMIN_TOKEN_ENVS,
            "CALLSTREAM_SECRET_KEY",
        ]
        lines = [f"{k}={env[k]}" for k in keys]
        # The console's address and the operators' sign-in token (its page /login asks for it).
        lines += [
            f"{CONSOLE.url_env}={env[CONSOLE.url_env]}",
            f"{CONSOLE_ADMIN_TOKEN_ENV}={self.console_secrets[CONSOLE_ADMIN_TOKEN_ENV]}",
        ]
        if self.nats_operator_password_file.is_file():
            # CALLSTREAM_NATS_URL carries the operator identity (nats://operator:pw@...), which
            # nats-py and the services' command-line tools take as is; the password alone is here.
            lines.append(f"CALLSTREAM_NATS_OPERATOR_PASSWORD_FILE={self.nats_operator_password_file}")
        path = self.run / "stack.env"
        path.write_text(
            "# written by ./dev up; source it: set -a; . .run/stack.env; set +a\n" + "\n".join(lines) + "\n"
        )
        path.chmod(0o600)

    def _wait_ready(self) -> list[str]:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        pending = dict(self.state.urls)
        with httpx.Client(timeout=2.0) as client:
            while pending and time.monotonic() < deadline:
                for name, url in list(pending.items()):
                    proc = self.processes.get(name)
                    if proc is not None and proc.poll() is not None:
                        return [name]
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{url}/health/ready").status_code == 200:
                            del pending[name]
                time.sleep(0.2)
        return list(pending)

    def _print_summary(self) -> None:
        print("callstream is up:")
        for name, url in self.state.urls.items():
            print(f"  {name:<12} {url}")
        print(f"  environment  {self.run / 'stack.env'}")
        print(f"  console sign-in token in {self.run / 'console_admin_token'}")

    def _follow_logs(self) -> int:
        """Stream every service's log with a prefix until Ctrl-C or SIGTERM, then stop everything."""
        stop = False

        def on_signal(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        files = {name: open(self.logs / f"{name}.log", "rb") for name in self.state.urls}  # noqa: SIM115
        width = max(len(n) for n in files)
        try:
            while not stop:
                quiet = True
                for name, f in files.items():
                    for line in f.readlines():
                        quiet = False
                        sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
                sys.stdout.flush()
                if all(p.poll() is not None for p in self.processes.values()):
                    print("every service has exited", file=sys.stderr)
                    break
                if quiet:
                    time.sleep(0.2)
        finally:
            for f in files.values():
                f.close()
            print("\nstopping callstream ...")
            self.down(quiet=True)
        return 0

    # ---- stop --------------------------------------------------------------------------------
    def down(self, *, quiet: bool = False) -> int:
        state = StackState.load(self.state_file) or self.state
        services = {n: p for n, p in state.pids.items() if not n.startswith("nats-")}
        _terminate(services, timeout=30)
        _terminate({n: p for n, p in state.pids.items() if n.startswith("nats-")}, timeout=15)
        if state.postgres:
            EmbeddedPostgres(Path(str(state.postgres["base"])), port=int(state.postgres["port"])).stop()
        if self.state_file.exists():
            self.state_file.unlink()
        if not quiet:
            print("callstream stopped")
        return 0

    def status(self) -> int:
        state = StackState.load(self.state_file)
        if state is None:
            print("no stack here (./dev up)")
            return 1
        with httpx.Client(timeout=2.0) as client:
            for name, pid in state.pids.items():
                url = state.urls.get(name, "")
                ready = ""
                if url and _alive(pid):
                    try:
                        ready = "ready" if client.get(f"{url}/health/ready").status_code == 200 else "not ready"
                    except httpx.HTTPError:
                        ready = "not answering"
                print(f"{name:<12} pid {pid:<8} {'running' if _alive(pid) else 'stopped':<8} {url:<26} {ready}")
        if state.postgres:
            pg = EmbeddedPostgres(Path(str(state.postgres["base"])), port=int(state.postgres["port"]))
            pg_pid = pg.pid()
            alive = pg_pid is not None and _alive(pg_pid)
            print(
                f"{'postgres':<12} pid {pg_pid or '-'!s:<8} {'running' if alive else 'stopped':<8} {pg.dsn(DATABASE)}"
            )
        return 0


def _terminate(pids: dict[str, int], timeout: float) -> None:
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    for pid in pids.values():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def _script(command: str) -> str:
    candidate = Path(sys.executable).parent / command
    return str(candidate) if candidate.exists() else command


async def _wait_jetstream(urls: list[str], timeout: float) -> None:
    """Return once every server answers a JetStream API request (which needs a meta leader)."""
    import nats

    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
                try:
                    js = nc.jetstream(timeout=2)
                    await js.account_info()
                    # Streams restored from .run/ elect their own leaders after the meta leader.
                    leaderless = [
                        i.config.name for i in await js.streams_info() if not (i.cluster and i.cluster.leader)
                    ]
                finally:
                    await nc.close()
                if leaderless:
                    raise RuntimeError(f"streams without a leader yet: {', '.join(map(str, leaderless))}")
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JetStream at {url} not ready after {timeout:.0f}s: {exc!r}") from exc
                await asyncio.sleep(0.25)


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()


__all__ = ["Stack", "wait_port"]
