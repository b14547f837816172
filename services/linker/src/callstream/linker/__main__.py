"""``callstream-linker``: serve (the default), migrate, setup."""

from __future__ import annotations

from pathlib import Path

from callstream.runtime import service_main

from ._app import build_served_app
from ._settings import load

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> None:
    service_main(prog="callstream-linker", load=load, build_app=build_served_app, migrations=MIGRATIONS, argv=argv)


if __name__ == "__main__":
    main()
