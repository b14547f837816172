"""One odd item in a pulled page never fails or stalls its run (issue #17, item 2, pull path).

A meeting whose ``recording_id`` is a string, a Gong call without a readable id, an item nested
deeper than any decoder recurses: each is skipped with a logged reason and counted in
``callstream_gateway_pull_calls_skipped_total``, the rest of the page is published, the run
finishes and the watermark moves. The counts the run reports are of calls actually published.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from prometheus_client import REGISTRY

from callstream.contracts import SyncProgress

DEEP = 1_500  # past the ~1,000 levels where msgspec's decoders raise RecursionError
MAX_DELIVER = 3  # a run that crashes on the poison gives up after 3 deliveries instead of 20


def _skipped(provider: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "callstream_gateway_pull_calls_skipped_total", {"provider": provider, "reason": reason}
    )
    return value or 0.0


def _deep(key: str, value: Any) -> bytes:
    """An object whose ``key`` is ``value`` and whose unknown field ``extra`` is nested DEEP levels."""
    return b'{"%s": %s, "extra": %s}' % (key.encode(), msgspec.json.encode(value), b"[" * DEEP + b"]" * DEEP)


async def _progress(harness: Any, run_id: str) -> list[SyncProgress]:
    return [e for e in await harness.events(run_id) if isinstance(e, SyncProgress) and e.resume_after is None]


async def test_fathom_meetings_with_a_string_id_or_nested_too_deep_are_skipped(harness: Any, fathom: Any) -> None:
    state, url = fathom
    ids = state.index.recording_ids
    state.replaced[ids[3]] = msgspec.Raw(msgspec.json.encode({"recording_id": str(ids[3]), "title": "x"}))
    state.replaced[ids[14]] = msgspec.Raw(_deep("recording_id", ids[14]))
    state.replaced[ids[25]] = msgspec.Raw(msgspec.json.encode({"recording_id": ids[25], "transcript": "not a list"}))
    before = {r: _skipped("fathom", r) for r in ("not_a_meeting", "nested_too_deep")}
    integration = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
    harness.start(max_deliver=MAX_DELIVER)
    run_id = await harness.request("fathom", integration, "backfill")
    finished = await harness.finished(run_id)

    assert finished.status == "success", finished.error
    assert finished.watermark is not None
    published = [int(raw.external_id) for raw, _ in await harness.raw_calls()]
    assert sorted(published) == sorted(set(ids) - {ids[3], ids[14], ids[25]})
    assert finished.calls_published == len(published) == len(ids) - 3
    progress = await _progress(harness, run_id)
    assert progress[-1].calls_published == len(published)
    assert _skipped("fathom", "not_a_meeting") == before["not_a_meeting"] + 2
    assert _skipped("fathom", "nested_too_deep") == before["nested_too_deep"] + 1


async def test_fathom_oauth_meeting_with_a_string_id_is_skipped_before_its_content_is_asked(
    harness: Any, fathom: Any
) -> None:
    state, url = fathom
    ids = state.index.recording_ids
    state.replaced[ids[5]] = msgspec.Raw(msgspec.json.encode({"recording_id": f"{ids[5]}"}))
    state.faults.limits_enabled = False
    tokens = await harness.fathom_oauth_tokens(url, state)
    integration = harness.store.add("fathom", "oauth", url, access_token=tokens["access_token"])
    harness.start(harness.settings_with(limits_enabled=False), max_deliver=MAX_DELIVER)
    finished = await harness.finished(await harness.request("fathom", integration, "backfill"))

    assert finished.status == "success", finished.error
    assert finished.calls_published == len(ids) - 1
    assert {int(raw.external_id) for raw, _ in await harness.raw_calls()} == set(ids) - {ids[5]}
    asked = {e.path for e in state.log.api() if e.path.startswith("/external/v1/recordings/")}
    assert not any(f"/{ids[5]}/" in path for path in asked)


async def test_gong_calls_without_a_readable_id_or_nested_too_deep_are_skipped(harness: Any, gong: Any) -> None:
    state, url = gong
    ids = state.index.ids
    bad_id, deep, deep_transcript = ids[10], ids[150], ids[220]
    state.replaced_calls[bad_id] = msgspec.Raw(b'{"metaData": {"id": 10, "started": "2026-01-01T00:00:00Z"}}')
    state.replaced_calls[deep] = msgspec.Raw(_deep("metaData", {"id": deep}))
    state.replaced_transcripts[deep_transcript] = msgspec.Raw(_deep("callId", deep_transcript))
    before = {r: _skipped("gong", r) for r in ("not_a_call", "nested_too_deep")}
    integration = harness.gong_basic(url)
    harness.start(max_deliver=MAX_DELIVER)
    run_id = await harness.request("gong", integration, "backfill")
    finished = await harness.finished(run_id)

    assert finished.status == "success", finished.error
    assert finished.watermark is not None
    published = {raw.external_id for raw, _ in await harness.raw_calls()}
    assert published == set(ids) - {bad_id, deep, deep_transcript}
    assert finished.calls_published == len(published)
    assert (await _progress(harness, run_id))[-1].calls_published == len(published)
    assert _skipped("gong", "not_a_call") == before["not_a_call"] + 1
    assert _skipped("gong", "nested_too_deep") == before["nested_too_deep"] + 2


async def test_gong_latest_skips_a_call_without_a_readable_id(harness: Any, gong: Any) -> None:
    state, url = gong
    newest = state.add_calls(6, started=datetime.now(UTC) - timedelta(hours=1))
    state.replaced_calls[newest[2]] = msgspec.Raw(b'{"metaData": {"id": null}}')
    integration = harness.gong_basic(url)
    harness.start(max_deliver=MAX_DELIVER)
    finished = await harness.finished(await harness.request("gong", integration, "latest", limit=5))

    assert finished.status == "success", finished.error
    published = {raw.external_id for raw, _ in await harness.raw_calls()}
    assert newest[2] not in published
    assert len(published) == finished.calls_published == 5
