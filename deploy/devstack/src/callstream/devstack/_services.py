"""The four services as the dev stack and the tests start them."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceDef:
    name: str
    package: str
    command: str
    default_port: int

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

# Migrations run in this order: the normalizer's tables exist before anything reads them.
MIGRATION_ORDER: tuple[str, ...] = ("gateway", "normalizer", "scheduler", "linker")


def by_name(name: str) -> ServiceDef:
    for service in SERVICES:
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
