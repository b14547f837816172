"""A pulled call the normalizer could never map is never published (issue #17, item 2): the
rest of the page is, the run finishes, and the skipped call is logged and counted."""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client import REGISTRY

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, create_app

EMBEDDED = {"include_transcript", "include_summary", "include_action_items", "include_crm_matches"}


def _skipped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "callstream_gateway_pull_calls_skipped_total", {"provider": "fathom", "reason": reason}
    )
    return value or 0.0


async def test_unmappable_meetings_are_skipped_and_the_run_goes_on(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=11, meetings=12, span_days=30))
    state.warm(EMBEDDED)
    assert state.encoded_cache is not None
    ids = state.index.recording_ids
    poisons = {
        # an unknown field nested deeper than the limit (a page still decodes around it)
        ids[2]: b'{"recording_id": %d, "extra": %s}' % (ids[2], b"[" * 200 + b"]" * 200),
        # a known field of the wrong type
        ids[7]: msgspec.json.encode({"recording_id": ids[7], "transcript": "not a list"}),
    }
    for key in list(state.encoded_cache):
        if key[0] in poisons:
            state.encoded_cache[key] = msgspec.Raw(poisons[key[0]])
    before = {reason: _skipped(reason) for reason in ("nested_too_deep", "not_a_meeting")}
    async with serve_in_process(create_app(state)) as url:
        integration = harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key")
        harness.start()
        finished = await harness.finished(await harness.request("fathom", integration, "backfill"))
    assert finished.status == "success", finished.error
    published = {int(raw.external_id) for raw, _ in await harness.raw_calls()}
    assert published == set(ids) - set(poisons)
    assert _skipped("nested_too_deep") == before["nested_too_deep"] + 1
    assert _skipped("not_a_meeting") == before["not_a_meeting"] + 1
