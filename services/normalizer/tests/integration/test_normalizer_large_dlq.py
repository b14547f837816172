"""The DLQ, redrive and replay work for meetings up to the body limit (issue #17, item 3): a dead
letter is ~4/3 of its message (base64), so a 15 MiB raw call makes a ~20 MiB entry, which the
deployments' max_payload (24 MiB) carries."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from normalizer_itkit import NORMALIZER, NormalizerProcess, publish_raw, stream_messages, wait_until

from callstream.contracts import DLQ, DeadLetter

MIB = 1024 * 1024


def _big_meeting(kit: Any, recording_id: int, size: int) -> dict[str, Any]:
    line = {"speaker": {"display_name": "Zoë Ångström"}, "text": "ünïcødé ✓ " * 40, "timestamp": "00:00:01"}
    per = len(msgspec.json.encode(line)) + 1
    meeting: dict[str, Any] = kit.fathom_meeting(recording_id=recording_id)
    meeting["transcript"] = [dict(line, timestamp=f"00:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(size // per)]
    return meeting


def cli(*args: str, database_url: str, nats_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLSTREAM_DATABASE_URL": database_url, "CALLSTREAM_NATS_URL": nats_url}
    return subprocess.run([str(NORMALIZER), *args], env=env, capture_output=True, text=True, timeout=120)


async def _letters(js: Any) -> list[tuple[int, DeadLetter]]:
    return [(m.seq, msgspec.json.decode(m.data, type=DeadLetter)) for m in await stream_messages(js, DLQ)]


async def _content(dsn: str, external_id: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        content: str | None = await conn.fetchval("select content from messages where external_id = $1", external_id)
        return content
    finally:
        await conn.close()


async def test_a_15_mib_poison_is_dead_lettered_whole_and_a_15_mib_dead_letter_redrives(
    database_url: str, nats_url: str, nc: Any, kit: Any, tmp_path: Path, normalizer_processes: list[Any]
) -> None:
    js = nc.jetstream()
    normalizer_processes.append(NormalizerProcess(database_url, nats_url, tmp_path / "n.log").start())

    # the payload names another meeting than the event: never mappable, so it goes to the DLQ whole
    poison = kit.raw_call(_big_meeting(kit, 1, 15 * MIB), external_id="2")
    assert len(poison) > 15 * MIB
    await publish_raw(js, poison, "calls.raw.fathom")
    found = await wait_until(lambda: _letters(js), 60)
    ((_, letter),) = found
    assert letter.data == poison
    assert letter.error.startswith("unmappable")

    # an entry as the consumer writes it when it gives up during an outage: redriving stores it
    good_meeting = _big_meeting(kit, 3, 15 * MIB)
    good = kit.raw_call(good_meeting)
    entry = DeadLetter(
        consumer="normalizer",
        subject="calls.raw.fathom",
        stream_sequence=99,
        headers={"Nats-Msg-Id": "orig"},
        data=good,
        error="gave up after 10 deliveries: OSError",
        delivery_count=10,
        failed_at=kit.T0,
    )
    encoded = msgspec.json.encode(entry)
    assert len(encoded) > 20 * MIB
    ack = await js.publish("dlq.normalizer", encoded)
    redriven = cli("dlq", "redrive", str(ack.seq), database_url=database_url, nats_url=nats_url)
    assert redriven.returncode == 0, redriven.stderr
    content = await wait_until(lambda: _content(database_url, "3"), 60)
    expected = "\n".join(f"{t['speaker']['display_name']}: {t['text']}" for t in good_meeting["transcript"])
    assert content == expected

    replayed = cli("replay", "--since", "1", database_url=database_url, nats_url=nats_url)
    assert replayed.returncode == 0, replayed.stderr
    report = json.loads(replayed.stdout.strip().splitlines()[-1])
    assert report == {"read": 2, "changed": 0, "unchanged": 1, "unmappable": 1}
