"""The four services as the dev stack and the tests start them."""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceDef:
    name: str
    package: str
    command: str
    default_port: int
    admin_api: bool = True

    @property
    def admin_token_env(self) -> str | None:
        """Its own admin token's variable; no service is given another's."""
        return f"{self.env_prefix}_ADMIN_TOKEN" if self.admin_api else None

    @property
    def env_prefix(self) -> str:
        return f"CALLSTREAM_{self.name.upper()}"

    @property
    def port_env(self) -> str:
        return f"{self.env_prefix}_PORT"

    @property
    def url_env(self) -> str:
        return f"{self.env_prefix}_URL"

    def migrations(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "migrations"
        return path if path.is_dir() else None


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("gateway", "callstream.gateway", "callstream-gateway", 8080),
    ServiceDef("linker", "callstream.linker", "callstream-linker", 8081),
    ServiceDef("normalizer", "callstream.normalizer", "callstream-normalizer", 8082),
    ServiceDef("scheduler", "callstream.scheduler", "callstream-scheduler", 8083),
)
# The operators' web pages: no tables, no streams, so not one of SERVICES (whose readiness follows
# PostgreSQL and NATS); it calls the others' HTTP APIs with the URLs and tokens of console_env.
# ``CALLSTREAM_CONSOLE_ADMIN_TOKEN`` is the operators' sign-in token.
CONSOLE = ServiceDef("console", "callstream.console", "callstream-console", 8084)
CONSOLE_ADMIN_TOKEN_ENV = "CALLSTREAM_CONSOLE_ADMIN_TOKEN"  # noqa: S105 - the name of a variable
# What the console is never given: it reads no table and no stream, and encrypts nothing.
_NOT_FOR_THE_CONSOLE = (
    "CALLSTREAM_DATABASE_URL",
    "CALLSTREAM_NATS_URL",
    "CALLSTREAM_NATS_PASSWORD",
    "CALLSTREAM_SECRET_KEY",
)
# The services the console calls, each with the admin token the console is given for it.
CONSOLE_BACKENDS: tuple[str, ...] = ("gateway", "scheduler", "normalizer", "linker")

# Migrations run in this order: the normalizer's tables exist before anything reads them.
MIGRATION_ORDER: tuple[str, ...] = ("gateway", "normalizer", "scheduler", "linker")


ADMIN_TOKEN_ENVS: tuple[str, ...] = tuple(s.admin_token_env for s in SERVICES if s.admin_token_env)


def new_admin_token(service: ServiceDef) -> str:
    """A fresh admin token: 32 random bytes, prefixed with the service so a token found in a
    terminal or a paste says what it opens."""
    return f"cs_{service.name}_admin_" + secrets.token_urlsafe(32)


def own_env(service: ServiceDef, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as ``service`` is started with it: without any other service's admin token, so a
    service's environment never carries another's admin power."""
    return {k: v for k, v in env.items() if k not in ADMIN_TOKEN_ENVS or k == service.admin_token_env}


def console_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as the console is started with it: without the services' admin tokens, but with each
    backend's URL and admin token under the console's names (``CALLSTREAM_CONSOLE_<SERVICE>_URL`` /
    ``_TOKEN``), which no other service is given; nor a database, NATS or encryption secret."""
    out = {k: v for k, v in env.items() if k not in ADMIN_TOKEN_ENVS and k not in _NOT_FOR_THE_CONSOLE}
    for name in CONSOLE_BACKENDS:
        backend = by_name(name)
        if backend.url_env in env:
            out[f"CALLSTREAM_CONSOLE_{name.upper()}_URL"] = env[backend.url_env]
        if backend.admin_token_env and backend.admin_token_env in env:
            out[f"CALLSTREAM_CONSOLE_{name.upper()}_TOKEN"] = env[backend.admin_token_env]
    return out


def admin_headers(env: Mapping[str, str], service: str) -> dict[str, str]:
    """``Authorization`` with ``service``'s own admin token from ``env`` (tests, benchmarks)."""
    variable = by_name(service).admin_token_env
    if variable is None:
        raise KeyError(f"{service} has no admin API")
    return {"Authorization": f"Bearer {env[variable]}"}


def by_name(name: str) -> ServiceDef:
    for service in (*SERVICES, CONSOLE):
        if service.name == name:
            return service
    raise KeyError(name)


async def migrate_all(dsn: str) -> None:
    """Every service's migrations on one database, in MIGRATION_ORDER (tests and benchmarks)."""
    import asyncpg

    from callstream.runtime import apply_migrations

    conn = await asyncpg.connect(dsn)
    try:
        for name in MIGRATION_ORDER:
            directory = by_name(name).migrations()
            if directory is not None:
                await apply_migrations(conn, name, directory)
    finally:
        await conn.close()
