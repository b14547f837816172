"""bench/chaos: the faults test at scale. N meetings (20,000 by default) posted by a Fathom-like
sender while the normalizer is SIGKILLed twice, the gateway once, and NATS and PostgreSQL restart
once each. Among the N, 20 meetings of 3 MiB; besides them, 20 poison raw calls published straight
to calls.raw.fathom, 4 poison webhooks, and 8 Fathom/Gong integrations whose provider refuses
connections, each asked for a backfill at the start (issue #17). Prints one JSON object: sent,
acked, stored, duplicates, lost, events, the extras' counts, the dead runs' states, wall time.
``ok`` is: every meeting acked and stored once, every event once, every stored meeting linkable,
every large one byte for byte, every poison in the DLQ and none stored, nothing else dead-lettered,
every poison webhook answered 400.

    .venv/bin/python bench/chaos/run.py [--n 20000] [--seed 7] [--large 20] [--poison 20] [--dead 8] [--smoke]
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

from tests.faults.chaos import BENCH_EXTRAS, ChaosReport, Extras, run  # noqa: E402

SMOKE_EXTRAS = Extras(large=1, large_mib=3, poison=2, poison_webhooks=1, dead=1)


def ok(report: ChaosReport, n: int, extras: Extras) -> bool:
    return (
        report.acked == n
        and report.lost == 0
        and report.duplicates == 0
        and report.duplicate_events == 0
        and report.missing_events == 0
        and report.unlinkable == 0
        and report.large_stored == report.large_identical == extras.large
        and report.poison_published == report.poison_dead_lettered == extras.poison
        and report.poison_stored == 0
        and report.dlq_other == 0
        and report.poison_webhooks_400 == extras.poison_webhooks
        and report.poison_webhooks_accepted == 0
        and report.dead_syncs_requested == extras.dead
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--large", type=int, default=BENCH_EXTRAS.large, help="meetings of 3 MiB among the N")
    parser.add_argument("--poison", type=int, default=BENCH_EXTRAS.poison, help="poison raw calls")
    parser.add_argument("--dead", type=int, default=BENCH_EXTRAS.dead, help="integrations with a dead provider")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args()
    n = 200 if args.smoke else args.n
    extras = (
        SMOKE_EXTRAS
        if args.smoke
        else Extras(
            large=args.large,
            large_mib=BENCH_EXTRAS.large_mib,
            poison=args.poison,
            poison_webhooks=BENCH_EXTRAS.poison_webhooks,
            dead=args.dead,
        )
    )
    base = Path(tempfile.mkdtemp(prefix="callstream-bench-chaos-"))
    try:
        report = asyncio.run(run(base, n, seed=args.seed, fault_window=4.0 if args.smoke else None, extras=extras))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {"benchmark": "chaos", "n": n, **report.as_dict()}
    result["ok"] = ok(report, n, extras)
    result["throughput_per_s"] = round(report.acked / report.wall_seconds, 1) if report.wall_seconds else None
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
