"""The normalizer's memory is bounded whatever the sizes of the meetings (issue #17, item 3).

Meetings up to the gateway's 16 MiB body limit flow end to end, and handling one costs several
times its size in memory (the bytes, the decoded transcript, the stored text and jsonb and their
encodings). A fetch of ``CALLSTREAM_NORMALIZER_BATCH_SIZE`` (100) raw calls, with
``STORE_CONCURRENCY`` batches in flight, could hold several large meetings at once: gigabytes in
one process, OOM-killed in its container, redelivered and killed again. The consumer now pulls
with a byte budget (``CALLSTREAM_NORMALIZER_FETCH_MAX_BYTES``) that also counts the batches still
being written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from normalizer_itkit import NormalizerProcess, publish_raw, wait_until

MIB = 1024 * 1024
LARGE, LARGE_SIZE, SMALL = 8, 12 * MIB, 20
# Measured here: before the byte budget the first fetch took all 28 raw calls (~96 MiB) into one
# batch; the process peaked at 576-756 MB, and only that because the broker cut its connection
# halfway ("Slow Consumer Detected: MaxPending of 67108864 Exceeded"; the rest came back after
# ack_wait: 66-70 s). With the default budget (16 MiB: one
# 12 MiB meeting in flight at a time, ~13x its size at its peak) it peaks at ~270 MB, all stored in
# ~14 s. The bound leaves room for the allocator's moods, not for a second large meeting.
PEAK_RSS_BOUND_MB = 400
# What an idle, started normalizer measures here (~80 MB): the bound is checked against it too, so
# that a change of baseline shows up as one rather than as a failure of the budget.
IDLE_RSS_BOUND_MB = 150


def _large_meeting(kit: Any, recording_id: int, size: int) -> dict[str, Any]:
    """A Fathom meeting whose transcript is ~``size`` bytes of non-ASCII text (which Python keeps
    in two bytes per character: the costly case)."""
    line = {"speaker": {"display_name": "Zoë Ångström"}, "text": f"{recording_id} ünïcødé ✓ " * 40}
    per = len(msgspec.json.encode(line)) + 1
    meeting: dict[str, Any] = kit.fathom_meeting(recording_id=recording_id, share_url=None)
    meeting["transcript"] = [dict(line, timestamp=f"00:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(size // per)]
    return meeting


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def _stored(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("select external_id, length(content) as n from messages")
        return {r["external_id"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def test_eight_12_mib_meetings_at_once_are_stored_within_a_bounded_peak_rss(
    database_url: str, nats_url: str, nc: Any, kit: Any, tmp_path: Path, normalizer_processes: list[Any]
) -> None:
    js = nc.jetstream()
    expected: dict[str, int] = {}
    # All pending before the process starts: its first fetch finds every one of them.
    for number in range(1, LARGE + 1):
        meeting = _large_meeting(kit, number, LARGE_SIZE)
        data = kit.raw_call(meeting)
        assert len(data) > LARGE_SIZE
        expected[str(number)] = (
            sum(len(t["speaker"]["display_name"]) + 2 + len(t["text"]) + 1 for t in meeting["transcript"]) - 1
        )
        await publish_raw(js, data, "calls.raw.fathom")
        del meeting, data
        if number == LARGE // 2:  # small ones in between the large ones
            for small in range(SMALL):
                await publish_raw(js, kit.raw_call(kit.fathom_meeting(recording_id=1000 + small)), "calls.raw.fathom")
                expected[str(1000 + small)] = -1
    process = NormalizerProcess(database_url, nats_url, tmp_path / "n.log")
    normalizer_processes.append(process)
    process.start()
    assert process.proc is not None
    pid = process.proc.pid
    idle = _rss_mb(pid, "VmRSS")

    started = time.monotonic()
    stored = await wait_until(lambda: _all_stored(database_url, len(expected)), 90, interval=0.25)
    elapsed = time.monotonic() - started
    peak = _rss_mb(pid, "VmHWM")
    print(f"idle {idle:.0f} MB, peak {peak:.0f} MB, all {len(expected)} stored in {elapsed:.1f}s")
    for external_id, length in expected.items():
        if length >= 0:
            assert stored[external_id] == length, external_id  # transcripts whole
    assert process.proc.poll() is None
    # Before the budget the broker cut the connection (a slow consumer: ~96 MiB pushed at once,
    # over nats-server's 64 MiB max_pending), and what was in flight came back only after ack_wait.
    assert '"nats disconnected"' not in process.log_path.read_text()
    assert idle <= IDLE_RSS_BOUND_MB
    assert peak <= PEAK_RSS_BOUND_MB, f"peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"


async def _all_stored(dsn: str, count: int) -> dict[str, int] | None:
    stored = await _stored(dsn)
    return stored if len(stored) >= count else None
