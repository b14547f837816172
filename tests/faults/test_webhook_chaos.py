"""Nothing lost, nothing doubled while the normalizer is SIGKILLed twice, the gateway once, and NATS
and PostgreSQL each restart once, at random moments while a Fathom-like sender posts; the chaos run
of issue #17 scaled down: large meetings among them stored byte for byte, poison raw calls all in the
DLQ and none stored, poison webhooks refused with 400, and integrations whose provider is dead
syncing (and failing) throughout."""

import shutil
import tempfile
from pathlib import Path

from .chaos import Extras, run

N = 2_000
# bench/chaos runs 20 large, 20 poison and 8 dead providers among 20,000; CI keeps its time
EXTRAS = Extras(large=2, large_mib=3, poison=5, poison_webhooks=4, dead=2)


async def test_webhooks_survive_killed_processes_and_restarted_servers() -> None:
    base = Path(tempfile.mkdtemp(prefix="callstream-chaos-"))
    try:
        report = await run(base, N, seed=11, extras=EXTRAS)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary = report.as_dict()
    print(summary)
    assert len(report.faults) == 5, summary
    assert report.acked == N, summary  # the sender's retries outlast every fault
    assert report.lost == 0, summary
    assert report.duplicates == 0, summary
    assert report.stored == N, summary
    assert report.created_events == N, summary
    assert report.duplicate_events == 0, summary
    assert report.missing_events == 0, summary
    assert report.unlinkable == 0, summary
    # large meetings: stored, and stored byte for byte
    assert report.large_sent == EXTRAS.large, summary
    assert report.large_stored == EXTRAS.large, summary
    assert report.large_identical == EXTRAS.large, summary
    # poison: every raw call in the DLQ, nothing else there, none stored; every webhook refused
    assert report.poison_published == EXTRAS.poison, summary
    assert report.poison_dead_lettered == EXTRAS.poison, summary
    assert report.poison_stored == 0, summary
    assert report.dlq_other == 0, summary
    assert report.dlq == EXTRAS.poison, summary
    assert report.poison_webhooks_400 == EXTRAS.poison_webhooks, summary
    assert report.poison_webhooks_accepted == 0, summary
    # dead providers were syncing (and failing) throughout, never stored anything, never succeeded
    assert report.dead_integrations == EXTRAS.dead, summary
    assert report.dead_syncs_requested == EXTRAS.dead, summary
    assert all(run["runs"] >= 1 and run["status"] != "success" for run in report.dead_runs), summary
