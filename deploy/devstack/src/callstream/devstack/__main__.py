"""``python -m callstream.devstack up|down|status``: what ``./dev`` runs inside the venv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PostgreSQL, NATS and the four services")
    up.add_argument("--detach", action="store_true", help="return once every service is ready")
    up.add_argument("--nats-cluster", type=int, default=1, metavar="N", help="start N NATS servers as a cluster")
    up.add_argument("--replicas", type=int, default=1, metavar="N", help="copies of gateway, normalizer, linker")
    sub.add_parser("down", help="stop a detached stack")
    sub.add_parser("status", help="show what runs where")
    args = parser.parse_args(argv)
    if args.command == "up":
        if args.nats_cluster < 1 or args.replicas < 1:
            parser.error("--nats-cluster and --replicas take a number of at least 1")
        return Stack(args.root, nats_cluster=args.nats_cluster, replicas=args.replicas).up(detach=args.detach)
    stack = Stack(args.root)
    return stack.down() if args.command == "down" else stack.status()


if __name__ == "__main__":
    sys.exit(main())
