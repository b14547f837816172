"""bench/chaos: the faults test at scale. N meetings (20,000 by default) posted by a Fathom-like
sender while the normalizer is SIGKILLed twice, the gateway once, and NATS and PostgreSQL restart
once each. Prints one JSON object: sent, acked, stored, duplicates, lost, events, wall time.

    .venv/bin/python bench/chaos/run.py [--n 20000] [--seed 7] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults.chaos import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args()
    n = 200 if args.smoke else args.n
    base = Path(tempfile.mkdtemp(prefix="callstream-bench-chaos-"))
    try:
        report = asyncio.run(run(base, n, seed=args.seed, fault_window=4.0 if args.smoke else None))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {"benchmark": "chaos", "n": n, **report.as_dict()}
    result["ok"] = report.acked == n and report.lost == 0 and report.duplicates == 0 and report.duplicate_events == 0
    result["throughput_per_s"] = round(report.acked / report.wall_seconds, 1) if report.wall_seconds else None
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
