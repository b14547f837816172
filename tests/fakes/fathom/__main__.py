"""``python -m tests.fakes.fathom --port 9100 --seed 7 --meetings 500 [--no-limits]``"""

from __future__ import annotations

import argparse

from .._server import serve_forever
from . import FathomConfig, FathomState, create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fathom", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--meetings", type=int, default=200)
    parser.add_argument("--api-key", default="fathom-test-key")
    parser.add_argument("--no-limits", action="store_true", help="never answer 429")
    parser.add_argument("--warm", action="store_true", help="build every meeting before serving (benchmarks)")
    args = parser.parse_args()
    state = FathomState(FathomConfig(seed=args.seed, meetings=args.meetings, api_keys={args.api_key: "account-1"}))
    state.faults.limits_enabled = not args.no_limits
    if args.warm:
        state.warm({"include_transcript", "include_summary", "include_action_items", "include_crm_matches"})
    serve_forever(create_app(state), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
