"""A service started as its own process, as ``./dev up`` and production start it, for tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ._servers import free_port, service_nats_env
from ._services import MIGRATION_ORDER, SERVICES, ServiceDef, by_name, new_admin_token, own_env

CLOSED_LOCAL_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def base_service_env(database_url: str, nats_url: str) -> dict[str, str]:
    """What every service needs to start, with throwaway secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(
        CALLSTREAM_DATABASE_URL=database_url,
        CALLSTREAM_NATS_URL=nats_url,
        CALLSTREAM_SECRET_KEY="k1:" + secrets.token_urlsafe(32),
        CALLSTREAM_LOG_FORMAT="json",
        CALLSTREAM_SHUTDOWN_SECONDS="10",
        PYTHONUNBUFFERED="1",
    )
    # Each service its own admin token (a test reads the one it needs from this env; each
    # service is started with its own only).
    for service in SERVICES:
        if service.admin_token_env:
            env[service.admin_token_env] = new_admin_token(service)
    # Tests never reach a real provider: every provider address points at a closed local port
    # unless a test sets it (to a fake) on purpose.
    for name in (
        "FATHOM_API_URL",
        "FATHOM_AUTHORIZE_URL",
        "FATHOM_TOKEN_URL",
        "GONG_API_URL",
        "GONG_AUTHORIZE_URL",
        "GONG_TOKEN_URL",
    ):
        env[f"CALLSTREAM_GATEWAY_{name}"] = CLOSED_LOCAL_URL
    # An integration's base_url may name only the fakes tests serve on loopback (over http).
    env["CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS"] = "http://127.0.0.1"
    return env


def setup_services(env: dict[str, str], *, attempts: int = 1) -> None:
    """``<service> setup`` for every service in migration order: migrations, streams, consumers.

    Setup is idempotent, so a failed one (a cluster still electing a consumer leader) is tried again."""
    for name in MIGRATION_ORDER:
        service = by_name(name)
        for attempt in range(1, attempts + 1):
            result = subprocess.run(
                [str(Path(sys.executable).parent / service.command), "setup"],
                env=own_env(service, env),
                capture_output=True,
                text=True,
                timeout=180,
            )
            if result.returncode == 0:
                break
            if attempt == attempts:
                raise RuntimeError(f"{service.command} setup failed:\n{result.stdout}{result.stderr}")
            time.sleep(2.0)


@dataclass
class ServiceProcess:
    service: ServiceDef
    env: dict[str, str]
    log_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def named(cls, name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
        service = by_name(name)
        log_dir.mkdir(parents=True, exist_ok=True)
        # The service connects with its own NATS identity, as in production (not the operator's).
        return cls(service, service_nats_env(name, dict(env)), log_dir / f"{name}-{time.monotonic_ns()}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        env = own_env(self.service, self.env)
        env[self.service.port_env] = str(self.port)
        script = Path(sys.executable).parent / self.service.command
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [str(script), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.service.command} exited {self.process.returncode}:\n{self.log()}")
            if self.ready():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"{self.service.command} not ready after {timeout:.0f}s:\n{self.log()}")

    def log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as an orchestrator sends it; SIGKILL only if the grace period runs out."""
        if self.process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def terminate(self) -> None:
        """Send SIGTERM without waiting (``stop`` then waits)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
