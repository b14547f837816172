"""Nothing lost, nothing doubled while the normalizer is SIGKILLed twice, the gateway once, and NATS
and PostgreSQL each restart once, at random moments while a Fathom-like sender posts."""

import shutil
import tempfile
from pathlib import Path

from .chaos import run

N = 2_000


async def test_webhooks_survive_killed_processes_and_restarted_servers() -> None:
    base = Path(tempfile.mkdtemp(prefix="callstream-chaos-"))
    try:
        report = await run(base, N, seed=11)
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
    assert report.dlq == 0, summary
    assert report.unlinkable == 0, summary
