"""Versioned SQL migrations, one folder per service, applied in order under an advisory lock.

Files are named ``NNNN_description.sql``; each runs in its own transaction together with its row in
``schema_migrations``. Several replicas may start at once: the advisory lock makes the others wait,
then they find nothing left to do. A file changed after it was applied is an error, not a re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ._logging import get_logger

log = get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# An arbitrary constant shared by every service, so all migrations of one database serialise.
ADVISORY_LOCK_KEY = 0x63_61_6C_6C_73_74_72


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version")
    return found


async def apply_migrations(conn: asyncpg.Connection, service: str, directory: Path) -> list[str]:
    """Apply what is missing; return the names applied."""
    migrations = discover(directory)
    applied: list[str] = []
    await conn.execute("select pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """create table if not exists schema_migrations (
                   service text not null,
                   version integer not null,
                   name text not null,
                   checksum text not null,
                   applied_at timestamptz not null default now(),
                   primary key (service, version))"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("select version, checksum from schema_migrations where service = $1", service)
        }
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(f"{service}/{migration.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "insert into schema_migrations (service, version, name, checksum) values ($1, $2, $3, $4)",
                    service,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration applied", migration_service=service, migration=migration.name)
            applied.append(migration.name)
    finally:
        await conn.execute("select pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return applied


async def migrate(dsn: str, service: str, directory: Path) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn, service, directory)
    finally:
        await conn.close()
