"""The normalizer's dead letters over its admin API (what ``callstream-normalizer dlq`` does, for
the console), on a real process with its own NATS identity: list (newest first, payload as text on
request, bounded), show, redrive (the original bytes back on their subject, the entry gone)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from normalizer_itkit import NormalizerProcess, stream_messages, wait_until

from callstream.contracts import raw_calls_subject

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
    assert call(process.port, "GET", "/v1/dlq/99999")[0] == 404

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
