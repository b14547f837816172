"""``callstream-console``: serve (the default). No migrations and no streams: the console keeps no
data of its own."""

from __future__ import annotations

import argparse

from callstream.runtime import configure_logging, serve_http

from ._app import build_app
from ._settings import load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callstream-console")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the console (the default)")
    parser.parse_args(argv)
    settings = load()
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    serve_http(build_app(settings), settings)


if __name__ == "__main__":
    main()
