"""``callstream-normalizer``: serve (the default), migrate, setup, dlq list|show|redrive, replay --since."""

from __future__ import annotations

from pathlib import Path

from callstream.runtime import service_main

from ._app import build_app
from ._commands import COMMANDS
from ._settings import load

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> None:
    service_main(
        prog="callstream-normalizer",
        load=load,
        build_app=build_app,
        migrations=MIGRATIONS,
        commands=COMMANDS,
        argv=argv,
    )


if __name__ == "__main__":
    main()
