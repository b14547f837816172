import asyncio
from pathlib import Path

import asyncpg
import pytest

from callstream.runtime import MigrationError, apply_migrations


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    (tmp_path / "0001_widgets.sql").write_text("create table widgets (id int primary key);")
    (tmp_path / "0002_gadgets.sql").write_text(
        "create table gadgets (id int primary key); insert into widgets values (1);"
    )
    return tmp_path


async def test_replicas_migrating_at_once_apply_each_file_exactly_once(database_url: str, migrations: Path) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, "demo", migrations) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, 0, 2]
        rows = await conns[0].fetch("select version from schema_migrations where service = 'demo' order by version")
        assert [r["version"] for r in rows] == [1, 2]
        assert await conns[0].fetchval("select count(*) from widgets") == 1
    finally:
        for c in conns:
            await c.close()


async def test_a_failing_migration_leaves_nothing_half_applied(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("create table ok_table (id int);")
    (tmp_path / "0002_broken.sql").write_text("create table half (id int); select no_such_function();")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(conn, "demo", tmp_path)
        assert await conn.fetchval("select to_regclass('half')") is None
        assert await conn.fetchval("select to_regclass('ok_table')") == "ok_table"
        versions = await conn.fetch("select version from schema_migrations where service = 'demo'")
        assert [r["version"] for r in versions] == [1]
    finally:
        await conn.close()


async def test_an_applied_migration_that_changed_is_an_error(database_url: str, migrations: Path) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, "demo", migrations)
        (migrations / "0001_widgets.sql").write_text("create table widgets (id bigint primary key);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, "demo", migrations)
    finally:
        await conn.close()
