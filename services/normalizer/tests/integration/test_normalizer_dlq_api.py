"""The normalizer's dead letters over its admin API (what ``callstream-normalizer dlq`` does, for
the console), on a real process with its own NATS identity: list (newest first, payload as text on
request, bounded, filtered), show, redrive one (the original bytes back on their subject, the entry
gone), and redrive all (oldest first, bounded, filtered, leaving entries newer than asked alone, a
letter without its bytes counted failed, a repeat publishing nothing twice)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from normalizer_itkit import NormalizerProcess, stream_messages, wait_until

from callstream.contracts import NORMALIZER_CONSUMER, DeadLetter, dlq_subject, raw_calls_subject
from callstream.normalizer import _dlq

pytestmark = pytest.mark.usefixtures("jetstream")
TOKEN = "n" * 40


def call(port: int, method: str, path: str, token: str | None = TOKEN, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, params=params, timeout=10)
    return response.status_code, response.json()


async def test_dead_letters_are_listed_shown_and_redriven_over_http(
    database_url: str, nats_url: str, nc: Any, pool: Any, kit: Any, tmp_path: Any, normalizer_processes: list[Any]
) -> None:
    process = NormalizerProcess(
        database_url, nats_url, tmp_path / "n.log", CALLSTREAM_NORMALIZER_ADMIN_TOKEN=TOKEN
    ).start()
    normalizer_processes.append(process)
    js = nc.jetstream()
    subject = raw_calls_subject("fathom", "int-fathom")
    # unmappable: a meeting without its recording id's type right
    await js.publish(subject, kit.raw_call(b'{"recording_id": "not a number"}', source="fathom", external_id="1"))
    await js.publish(subject, kit.raw_call(b'{"recording_id": []}', source="fathom", external_id="2"))

    async def two() -> bool:
        return len(await stream_messages(js, "DLQ")) == 2

    await wait_until(two, timeout=30)
    assert call(process.port, "GET", "/v1/dlq", token=None)[0] == 401
    assert call(process.port, "GET", "/v1/dlq", limit=500)[0] == 400
    status, listed = call(process.port, "GET", "/v1/dlq", include="payload")
    assert status == 200
    assert listed["total"] == 2
    first, second = listed["items"]  # newest first
    assert first["dlq_seq"] > second["dlq_seq"]
    assert (first["subject"], first["consumer"]) == (subject, "normalizer")
    assert '"recording_id": []' in first["payload"]
    assert first["error"]
    assert "payload" not in call(process.port, "GET", "/v1/dlq")[1]["items"][0]

    status, shown = call(process.port, "GET", f"/v1/dlq/{second['dlq_seq']}")
    assert (status, shown["payload_truncated"]) == (200, False)
    assert '"not a number"' in shown["payload"]
    for unknown in (99999, 0, -1, 2**64):  # never a sequence: 404, not the broker's 400 as a 503
        assert call(process.port, "GET", f"/v1/dlq/{unknown}")[0] == 404, unknown

    before = len(await stream_messages(js, "CALLS_RAW", subject))
    status, redriven = call(process.port, "POST", f"/v1/dlq/{second['dlq_seq']}/redrive")
    assert (status, redriven) == (200, {"redriven": second["dlq_seq"], "subject": subject})
    assert len(await stream_messages(js, "CALLS_RAW", subject)) == before + 1

    # still unmappable: back in the DLQ as a new entry, the redriven one gone
    async def again() -> bool:
        items = call(process.port, "GET", "/v1/dlq")[1]["items"]
        seqs = {i["dlq_seq"] for i in items}
        return len(items) == 2 and second["dlq_seq"] not in seqs

    await wait_until(again, timeout=30)
    assert call(process.port, "POST", f"/v1/dlq/{second['dlq_seq']}/redrive")[0] == 404

    # ---- redrive all ----------------------------------------------------------------------------
    # Besides the two poison calls: a letter recorded without its bytes, and one whose cause is gone
    # (a good meeting, as after a fix was deployed).
    def letter(data: bytes) -> bytes:
        return msgspec.json.encode(
            DeadLetter(
                consumer="normalizer", subject=subject, stream_sequence=0, headers={}, data=data,
                error="TimeoutError: the database did not answer", delivery_count=5, failed_at=datetime.now(UTC),
            )
        )  # fmt: skip

    good = kit.raw_call(kit.fathom_meeting(recording_id=424242), external_id="424242")
    await js.publish(dlq_subject(NORMALIZER_CONSUMER.durable), letter(b""))
    await js.publish(dlq_subject(NORMALIZER_CONSUMER.durable), letter(good))
    # Another service's dead letter in the same stream is not the normalizer's to show or redrive.
    theirs = await js.publish(dlq_subject("scheduler-sync-events"), letter(good))
    assert call(process.port, "GET", f"/v1/dlq/{theirs.seq}")[0] == 404
    assert call(process.port, "POST", f"/v1/dlq/{theirs.seq}/redrive")[0] == 404
    assert call(process.port, "GET", "/v1/dlq")[1]["total"] == 4
    assert call(process.port, "GET", "/v1/dlq", subject="calls.raw.fathom.*")[1]["total"] == 4
    assert call(process.port, "GET", "/v1/dlq", subject="calls.raw.gong.>", consumer="normalizer")[1]["total"] == 0
    assert call(process.port, "GET", "/v1/dlq", consumer="normalizer-features")[1]["total"] == 0
    for bad in ({"limit": 0}, {"limit": 101}, {"subject": "calls..raw"}, {"subject": "calls.>.x"}):
        assert call(process.port, "POST", "/v1/dlq/redrive", **bad)[0] == 400, bad
    assert call(process.port, "POST", "/v1/dlq/redrive", token=None)[0] == 401
    status, nothing = call(process.port, "POST", "/v1/dlq/redrive", subject="calls.raw.gong.>")
    assert (status, nothing["redriven"], nothing["failed"], nothing["remaining"]) == (200, 0, 0, 0)
    assert call(process.port, "GET", "/v1/dlq")[1]["total"] == 4

    seqs = sorted(i["dlq_seq"] for i in call(process.port, "GET", "/v1/dlq")[1]["items"])
    hollow_seq, good_seq = seqs[2], seqs[3]
    # One a request: the oldest with its bytes; the hollow one stays, counted failed.
    status, first_batch = call(process.port, "POST", "/v1/dlq/redrive", limit=1, subject="calls.raw.fathom.>")
    assert status == 200
    assert {k: first_batch[k] for k in ("redriven", "failed", "remaining", "up_to")} == {
        "redriven": 1, "failed": 1, "remaining": 2, "up_to": good_seq
    }  # fmt: skip
    assert first_batch["failures"] == [{"dlq_seq": hollow_seq, "error": "no_bytes"}]
    status, rest = call(process.port, "POST", "/v1/dlq/redrive", up_to=first_batch["up_to"])
    assert (status, rest["redriven"], rest["failed"], rest["remaining"]) == (200, 2, 1, 0)

    # The good meeting is stored; the two poison calls come back as new entries, which a repeat up
    # to the same sequence leaves alone (a caller looping until nothing remains ends).
    async def stored() -> bool:
        return bool(await pool.fetchval("select count(*) from messages where external_id = '424242'"))

    await wait_until(stored, timeout=30)

    async def back() -> list[tuple[int, Any]]:
        found = await _dlq.entries(js)
        return found if len(found) == 3 else []

    found = await wait_until(back, timeout=30)
    assert found[0][0] == hollow_seq
    assert all(seq > good_seq for seq, _ in found[1:])
    status, again_answer = call(process.port, "POST", "/v1/dlq/redrive", up_to=first_batch["up_to"])
    assert (status, again_answer["redriven"], again_answer["failed"], again_answer["remaining"]) == (200, 0, 1, 0)

    # A redrive repeated (its answer lost, two operators at once) publishes once and does not fail.
    seq, comeback = found[1]
    before = len(await stream_messages(js, "CALLS_RAW", subject))
    await _dlq.redrive(js, seq, comeback)
    await _dlq.redrive(js, seq, comeback)
    assert len(await stream_messages(js, "CALLS_RAW", subject)) == before + 1
    assert seq not in dict(await _dlq.entries(js))
