"""``callstream-gateway``: serve (the default), migrate, setup, reencrypt."""

from __future__ import annotations

from pathlib import Path

from callstream.runtime import Command, service_main

from . import _reencrypt
from ._app import build_app
from ._settings import load

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> None:
    service_main(
        prog="callstream-gateway",
        load=load,
        build_app=build_app,
        migrations=MIGRATIONS,
        commands={
            "reencrypt": Command(
                help="rewrite every stored secret under the first key of CALLSTREAM_SECRET_KEY", run=_reencrypt.run
            )
        },
        argv=argv,
    )


if __name__ == "__main__":
    main()
