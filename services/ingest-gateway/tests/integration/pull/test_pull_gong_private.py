"""Private Gong calls (``metaData.isPrivate``): the call is published, what was said is not.

gong.md §3.1 and §7: connectors drop private calls before requesting transcripts. Here the fake
Gong would hand out a private call's transcript if asked, so a worker that asked would be caught.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from callstream.contracts import GongCallBundle
from callstream.gateway.pull._gong import CONTENT_SELECTOR
from tests.fakes import serve_in_process
from tests.fakes.gong import GongConfig, GongState, Selector, build_call
from tests.fakes.gong import create_app as gong_app


def _transcript_requests(state: GongState) -> list[Any]:
    return [e for e in state.log.api() if e.path == "/v2/calls/transcript"]


async def test_private_calls_are_published_without_transcript_or_what_was_said(harness: Any) -> None:
    state = GongState(GongConfig(seed=11, calls=230, span_days=30, private_every=4))
    private = set(state.index.private)
    assert len(private) == 57  # the fake made some calls private; otherwise the test proves nothing
    async with serve_in_process(gong_app(state)) as url:
        integration = harness.gong_basic(url)
        harness.start()
        finished = await harness.finished(await harness.request("gong", integration, "backfill"))
    assert finished.status == "success", finished.error
    assert finished.calls_published == 230

    asked = [cid for e in _transcript_requests(state) for cid in e.body["callIds"]]
    assert asked, "no transcript was requested at all"
    assert not private & set(asked)  # never requested, so never fetched
    assert set(asked) == set(state.index.ids) - private

    selector = Selector.parse(CONTENT_SELECTOR)
    bundles = {
        raw.external_id: msgspec.json.decode(raw.payload, type=GongCallBundle) for raw, _ in await harness.raw_calls()
    }
    assert set(bundles) == set(state.index.ids)
    for cid, bundle in bundles.items():
        sent = build_call(state.index, state.index.position(cid), selector, host=state.config.app_host)
        call = msgspec.json.decode(bundle.call)
        if cid in private:
            assert not bundle.has_transcript
            assert "content" not in call
            assert "collaboration" not in call
            assert sent["content"]["pointsOfInterest"]["actionItems"][0]["snippet"] not in bytes(bundle.call).decode()
            kept = {k: v for k, v in sent.items() if k not in ("content", "collaboration")}
            assert bytes(bundle.call) == msgspec.json.encode(kept)  # the rest byte for byte
            assert call["metaData"]["isPrivate"] is True
        else:
            assert bundle.has_transcript
            assert bytes(bundle.call) == msgspec.json.encode(sent)


async def test_a_page_of_only_private_calls_asks_for_no_transcripts(harness: Any) -> None:
    state = GongState(GongConfig(seed=12, calls=5, span_days=3))
    newest = state.add_calls(3, started=datetime.now(UTC) - timedelta(minutes=30), private=True)
    async with serve_in_process(gong_app(state)) as url:
        integration = harness.gong_basic(url)
        harness.start()
        finished = await harness.finished(await harness.request("gong", integration, "latest", limit=3))
    assert finished.status == "success", finished.error
    assert finished.calls_published == 3
    assert _transcript_requests(state) == []  # an empty callIds would be a 400; none is sent at all
    published = {raw.external_id: raw for raw, _ in await harness.raw_calls()}
    assert set(published) == set(newest)
    assert not any(msgspec.json.decode(r.payload, type=GongCallBundle).has_transcript for r in published.values())
