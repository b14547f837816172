from pathlib import Path

import pytest

from callstream.runtime import MigrationError, discover


def test_migrations_are_discovered_in_version_order(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("select 2")
    (tmp_path / "0001_first.sql").write_text("select 1")
    assert [(m.version, m.name) for m in discover(tmp_path)] == [(1, "0001_first.sql"), (2, "0002_second.sql")]


@pytest.mark.parametrize("names", [["1_short.sql"], ["0001_Upper.sql"], ["0001_a.sql", "0001_b.sql"]])
def test_misnamed_or_clashing_migrations_are_refused(tmp_path: Path, names: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("select 1")
    with pytest.raises(MigrationError):
        discover(tmp_path)


def test_every_service_migration_file_is_well_named() -> None:
    from callstream.devstack import SERVICES

    for service in SERVICES:
        directory = service.migrations()
        assert directory is not None, service.name
        discover(directory)  # raises on a bad name or a clash
