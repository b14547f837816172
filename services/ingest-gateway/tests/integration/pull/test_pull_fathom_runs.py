"""Fathom pulls against the fake Fathom over HTTP, publishing into the test's JetStream."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import msgspec

from callstream.contracts import TimeWindow, pull_event_id
from callstream.gateway._integrations import HostNotAllowed
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState, build_meeting, create_app
from tests.fakes.fathom._data import shape

EMBEDDED = {"include_transcript", "include_summary", "include_action_items", "include_crm_matches"}


def _api_key(harness: Any, url: str) -> str:
    return str(harness.store.add("fathom", "api_key", url + "/external/v1", api_key="fathom-test-key"))


async def test_api_key_backfill_pages_to_the_end_with_content_embedded(harness: Any, fathom: Any) -> None:
    state, url = fathom
    integration = _api_key(harness, url)
    harness.start()
    finished = await harness.finished(await harness.request("fathom", integration, "backfill"))

    n = len(state.index.recording_ids)
    assert finished.status == "success", finished.error
    assert finished.calls_published == n
    assert finished.pages == math.ceil(n / state.config.page_size)
    calls = await harness.raw_calls()
    assert len(calls) == n
    for raw, headers in calls:
        assert raw.origin == "pull"
        assert headers["Nats-Msg-Id"] == pull_event_id(integration, raw.external_id, bytes(raw.payload))
        pos = state.index.position(int(raw.external_id)) or 0
        expected = shape(build_meeting(state.index, pos), EMBEDDED, content_ready=True)
        assert bytes(raw.payload) == msgspec.json.encode(expected)  # byte for byte as Fathom sent it
    served = state.log.api()
    assert all(e.status == 200 and e.heavy for e in served)  # include_transcript makes a list page heavy


async def test_windows_and_limits_kept_at_a_scaled_clock(harness: Any) -> None:
    # Fathom's 60 requests and 30 heavy ones per minute, on a 2-second window so the test is short.
    state = FathomState(
        FathomConfig(seed=9, meetings=45, requests_per_window=6, heavy_per_window=3, window_seconds=2.0)
    )
    async with serve_in_process(create_app(state)) as url:
        integration = _api_key(harness, url)
        harness.start(
            harness.settings_with(fathom_requests_per_window=6, fathom_heavy_per_window=3, fathom_window_seconds=2.0)
        )
        # a window that holds meetings 5..34 (newest first): 30 meetings, 3 pages
        window = TimeWindow(
            start=state.index.created[35] + timedelta(seconds=1), end=state.index.created[4] + timedelta(seconds=1)
        )
        finished = await harness.finished(await harness.request("fathom", integration, "range", window=window))
    assert finished.status == "success", finished.error
    published = {int(raw.external_id) for raw, _ in await harness.raw_calls()}
    assert published == set(state.index.recording_ids[4:35])
    served = state.log.api()
    assert [e.status for e in served].count(429) == 0
    assert harness.max_in_window([e.at for e in served if e.heavy], 2.0) <= 3
    assert harness.max_in_window([e.at for e in served], 2.0) <= 6


async def test_oauth_integrations_fetch_transcript_and_summary_per_recording(harness: Any) -> None:
    state = FathomState(FathomConfig(seed=4, meetings=12))
    state.faults.limits_enabled = False
    async with serve_in_process(create_app(state)) as url:
        tokens = await harness.fathom_oauth_tokens(url, state)
        integration = harness.store.add("fathom", "oauth", url, access_token=tokens["access_token"])
        harness.start(harness.settings_with(limits_enabled=False))
        finished = await harness.finished(await harness.request("fathom", integration, "backfill"))
    assert finished.status == "success", finished.error
    calls = await harness.raw_calls()
    assert len(calls) == 12
    for raw, _ in calls:
        meeting = msgspec.json.decode(raw.payload)
        full = build_meeting(state.index, state.index.position(int(raw.external_id)) or 0)
        assert meeting["transcript"] == full["transcript"]
        assert meeting["default_summary"] == full["default_summary"]
        assert meeting["action_items"] == full["action_items"]
    paths = [e.path for e in state.log.api()]
    assert sum(p.endswith("/transcript") for p in paths) == 12
    assert sum(p.endswith("/summary") for p in paths) == 12
    assert all(e.status == 200 for e in state.log.api())  # never asked /meetings for content it refuses


async def test_a_refused_token_is_refreshed_once_and_the_run_goes_on(harness: Any, fathom: Any) -> None:
    state, url = fathom
    state.faults.limits_enabled = False
    tokens = await harness.fathom_oauth_tokens(url, state)
    integration = harness.store.add("fathom", "oauth", url, access_token=tokens["access_token"])
    harness.store.refresh = harness.fathom_refresher(url, state, {integration: tokens["refresh_token"]})
    state.expire_access_tokens()
    harness.start(harness.settings_with(limits_enabled=False))
    finished = await harness.finished(await harness.request("fathom", integration, "latest", limit=3))
    assert finished.status == "success", finished.error
    assert harness.store.refreshes == 1
    assert [e.status for e in state.log.api()].count(401) == 1
    assert len(await harness.raw_calls()) == 3


async def test_a_bad_api_key_ends_the_run_at_once(harness: Any, fathom: Any) -> None:
    state, url = fathom
    integration = harness.store.add("fathom", "api_key", url, api_key="not-a-key")
    harness.start()
    finished = await harness.finished(await harness.request("fathom", integration, "backfill"))
    assert finished.status == "error"
    assert [e.status for e in state.log.api()] == [401]


async def test_an_integration_whose_host_is_off_the_allow_list_fails_without_a_request(
    harness: Any, fathom: Any
) -> None:
    state, url = fathom
    integration = harness.store.add("fathom", "api_key", url, api_key="fathom-test-key")

    async def refused(integration_id: str) -> None:
        raise HostNotAllowed(f"{url} is not on CALLSTREAM_GATEWAY_ALLOWED_API_HOSTS")

    harness.store.access = refused
    harness.start()
    finished = await harness.finished(await harness.request("fathom", integration, "backfill"))
    assert finished.status == "error"
    assert "not allowed" in (finished.error or "")
    assert state.log.api() == []


async def test_latest_dedupes_when_new_meetings_shift_the_pages(harness: Any, fathom: Any) -> None:
    state, url = fathom
    state.faults.limits_enabled = False
    state.faults.delay_seconds = 0.3
    integration = _api_key(harness, url)
    harness.start(harness.settings_with(limits_enabled=False))
    run_id = await harness.request("fathom", integration, "latest", limit=25)
    for _ in range(100):
        if await harness.events(run_id):
            break
        await asyncio.sleep(0.05)
    newest_before = state.index.recording_ids[:25]
    await state.add_meetings(4, deliver=False)  # page 2 now repeats the end of page 1
    finished = await harness.finished(run_id)
    assert finished.status == "success", finished.error
    ids = [int(raw.external_id) for raw, _ in await harness.raw_calls()]
    assert len(ids) == len(set(ids)) == 25
    assert set(newest_before[:10]) <= set(ids)
