"""A reconciling run's listing (issue #19, 1c): ``CallsListed`` is published only for a window read
whole — every page answered, every listed call's id read — and never for a run that stopped on a
failing page or a refusing provider, nor for a run that is not reconciling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from callstream.contracts import CALLS_RAW, CallsListed, TimeWindow, sync_requested_subject
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

# Failing deliveries given up on quickly; no pacing (the fakes' limits are off too).
GIVE_UP = {"retry_attempts": 2, "breaker_enabled": False, "defer_max_seconds": 0.3}  # and max_deliver=2
UNPACED = {"limits_enabled": False}

WINDOW = TimeWindow(start=datetime.now(UTC) - timedelta(days=40), end=datetime.now(UTC))


async def _reconcile(harness: Any, provider: str, integration: str, *, reconcile: bool = True) -> str:
    request = msgspec.structs.replace(
        harness.sync_request(provider, integration, "range", window=WINDOW), reconcile=reconcile
    )
    await harness.js.publish(
        sync_requested_subject(provider), msgspec.json.encode(request), headers={"Nats-Msg-Id": request.run_id}
    )
    return str(request.run_id)


async def _messages(harness: Any, prefix: str) -> list[Any]:
    info = await harness.js.stream_info(CALLS_RAW)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        msg = await harness.js.get_msg(CALLS_RAW, seq)
        if msg.subject.startswith(prefix):
            found.append(msg)
    return found


async def _listings(harness: Any) -> list[CallsListed]:
    return [msgspec.json.decode(m.data, type=CallsListed) for m in await _messages(harness, "calls.listed.")]


def _api_key(harness: Any, url: str) -> str:
    return str(harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key"))


async def test_a_window_read_whole_is_listed_after_its_calls(harness: Any, fathom: Any) -> None:
    state, url = fathom
    integration = _api_key(harness, url)
    state.faults.limits_enabled = False
    harness.start(harness.settings_with(**UNPACED))
    begun = datetime.now(UTC)
    run_id = await _reconcile(harness, "fathom", integration)
    finished = await harness.finished(run_id)
    assert finished.status == "success", finished.error

    [listing] = await _listings(harness)
    assert (listing.run_id, listing.integration_id, listing.source) == (run_id, integration, "fathom")
    assert sorted(listing.external_ids) == sorted(str(r) for r in state.index.recording_ids)
    assert listing.window.start == WINDOW.start
    assert listing.window.end == WINDOW.end
    assert begun <= listing.listed_at <= finished.at
    # it follows every call of the run in the stream
    info = await harness.js.stream_info(CALLS_RAW, subjects_filter="calls.listed.>")
    assert info.state.last_seq == (await harness.js.stream_info(CALLS_RAW)).state.last_seq

    # a run that is not reconciling lists nothing
    finished = await harness.finished(await _reconcile(harness, "fathom", integration, reconcile=False))
    assert finished.status == "success"
    assert len(await _listings(harness)) == 1


async def test_a_run_that_stopped_on_a_failing_page_lists_nothing(harness: Any, fathom: Any) -> None:
    state, url = fathom
    integration = _api_key(harness, url)
    state.faults.update({"fail_next_cursor": 10_000, "fail_status": 500, "limits_enabled": False})  # page 2 on
    harness.start(harness.settings_with(**GIVE_UP, **UNPACED), max_deliver=2)
    finished = await harness.finished(await _reconcile(harness, "fathom", integration))
    assert finished.status == "error"
    assert finished.calls_published == state.config.page_size  # page 1 was published
    assert await _listings(harness) == []


async def test_gong_refusing_a_page_with_429_lists_nothing(harness: Any, gong: Any) -> None:
    state, url = gong
    integration = harness.gong_basic(url)
    state.faults.update({"fail_next_cursor": 10_000, "fail_status": 429, "limits_enabled": False})
    harness.start(harness.settings_with(**GIVE_UP, **UNPACED), max_deliver=2)
    finished = await harness.finished(await _reconcile(harness, "gong", integration))
    assert finished.status == "error"
    assert finished.calls_published > 0
    assert await _listings(harness) == []


async def test_a_listed_call_whose_id_cannot_be_read_makes_the_listing_incomplete(harness: Any, fathom: Any) -> None:
    state, url = fathom
    integration = _api_key(harness, url)
    state.replaced[state.index.recording_ids[3]] = msgspec.Raw(b'{"title": "no id"}')
    state.faults.limits_enabled = False
    harness.start(harness.settings_with(**UNPACED))
    finished = await harness.finished(await _reconcile(harness, "fathom", integration))
    assert finished.status == "success"
    assert finished.calls_published == len(state.index.recording_ids) - 1
    assert await _listings(harness) == []


async def test_a_meeting_deleted_mid_crawl_hides_no_other_from_the_listing(harness: Any, fathom: Any) -> None:
    """Fathom's page-number cursor: deleting a meeting of page 1 while page 2 is asked for moves the
    first meeting of page 2 onto page 1, already read. The ids-only second pass lists it."""
    state, url = fathom
    integration = _api_key(harness, url)
    state.faults.limits_enabled = False
    victim, shifted = state.index.recording_ids[0], state.index.recording_ids[state.config.page_size]

    def delete_once(page: int) -> None:
        if page == 1 and state.index.position(victim) is not None:
            state.delete_meetings([victim])

    state.after_page = delete_once
    harness.start(harness.settings_with(**UNPACED))
    finished = await harness.finished(await _reconcile(harness, "fathom", integration))
    assert finished.status == "success", finished.error
    published = {msgspec.json.decode(m.data)["external_id"] for m in await _messages(harness, "calls.raw.")}
    assert str(shifted) not in published  # the content pass skipped it
    [listing] = await _listings(harness)
    assert str(shifted) in listing.external_ids
    assert set(listing.external_ids) >= {str(r) for r in state.index.recording_ids}
    light = [e for e in state.log.api() if not e.heavy]
    assert light, "the second pass asked for no content"


async def test_a_listed_meeting_whose_recording_answers_404_is_listed_as_gone(harness: Any) -> None:
    """OAuth integrations ask ``/recordings`` for each meeting's transcript and summary: both 404
    is Fathom saying the recording is gone, even while ``/meetings`` still lists it."""
    state = FathomState(FathomConfig(seed=4, meetings=12, span_days=30))  # inside the window
    state.faults.limits_enabled = False
    gone = state.index.recording_ids[5]
    state.recordings_gone.add(gone)
    async with serve_in_process(fathom_app(state)) as url:
        tokens = await harness.fathom_oauth_tokens(url, state)
        integration = harness.store.add("fathom", "oauth", url, access_token=tokens["access_token"])
        harness.start(harness.settings_with(**UNPACED))
        finished = await harness.finished(await _reconcile(harness, "fathom", integration))
        assert finished.status == "success", finished.error
        [listing] = await _listings(harness)
        assert listing.gone_external_ids == [str(gone)]
        assert str(gone) in listing.external_ids
        published = {msgspec.json.decode(m.data)["external_id"] for m in await _messages(harness, "calls.raw.")}
        assert str(gone) not in published
        assert len(published) == 11

        # an incremental run is no judge: the meeting goes out without the content it could not get
        finished = await harness.finished(await harness.request("fathom", integration, "backfill"))
        assert finished.status == "success", finished.error
        assert finished.calls_published == 12


async def test_a_gong_call_deleted_mid_crawl_hides_no_other_from_the_listing(harness: Any) -> None:
    """Gong's cursor is an offset in the fake (and of unknown make at Gong): the same shift, the same
    second pass (``/v2/calls/extensive`` without a content selector: metaData only)."""
    state = GongState(GongConfig(seed=6, calls=25, span_days=30, page_size=10))
    state.faults.limits_enabled = False
    victim, shifted = state.index.ids[0], state.index.ids[state.config.page_size]

    def delete_once(page: int) -> None:
        if page == 1 and state.index.position(victim) is not None:
            state.delete_calls([victim])

    state.after_page = delete_once
    async with serve_in_process(gong_app(state)) as url:
        integration = harness.gong_basic(url)
        harness.start(harness.settings_with(**UNPACED))
        finished = await harness.finished(await _reconcile(harness, "gong", integration))
    assert finished.status == "success", finished.error
    published = {msgspec.json.decode(m.data)["external_id"] for m in await _messages(harness, "calls.raw.")}
    assert shifted not in published  # the content pass skipped it
    [listing] = await _listings(harness)
    assert shifted in listing.external_ids
    assert set(listing.external_ids) >= set(state.index.ids)
