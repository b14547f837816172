"""``python -m tests.fakes.gong --port 9200 --seed 7 --calls 1000 [--no-limits]``"""

from __future__ import annotations

import argparse

from .._server import serve_forever
from . import GongConfig, GongState, Selector, create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.gong", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--private-every", type=int, default=0, help="every Nth call is private")
    parser.add_argument("--no-limits", action="store_true", help="never answer 429")
    parser.add_argument("--warm", action="store_true", help="build every call before serving (benchmarks)")
    args = parser.parse_args()
    state = GongState(GongConfig(seed=args.seed, calls=args.calls, private_every=args.private_every))
    state.faults.limits_enabled = not args.no_limits
    if args.warm:  # what the pull worker asks /v2/calls/extensive for
        state.warm(
            Selector(
                context="Extended",
                timings=("Now", "TimeOfCall"),
                parties=True,
                content=True,
                interaction=True,
                collaboration=True,
            )
        )
    serve_forever(create_app(state), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
