"""The fake Fathom against Fathom's official Python SDK (``fathom-python``), the test oracle
DESIGN.md names: what the fake sends must parse with the SDK's own models, carry no field the
SDK does not know, and leave out nothing a request asked for.

Two ways in: the SDK's async client over HTTP (its own query encoding, auth headers and response
parsing), and the raw bytes the fake sent, validated with the SDK's models and walked key by key
(pydantic ignores unknown keys, so an extra field would otherwise pass unseen).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from fathom_python import Fathom, errors, models
from litestar import Litestar, Request, post
from pydantic import BaseModel

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.fathom._data import CONTENT_FLAGS, LIST_FLAGS

KEY = "fathom-test-key"
ALL_FLAGS = {
    flag: True for flag in LIST_FLAGS
}  # include_transcript, _summary, _action_items, _crm_matches, _highlights


def unknown_keys(model: Any, raw: Any, path: str = "$") -> list[str]:
    """Paths of keys in ``raw`` that the SDK's parsed ``model`` has no field for (at any depth)."""
    if isinstance(model, BaseModel):
        assert isinstance(raw, dict), f"{path}: the SDK parsed an object from {type(raw).__name__}"
        known = {(f.alias or name): name for name, f in type(model).model_fields.items()}
        found = [f"{path}.{key}" for key in raw if key not in known]
        for key, value in raw.items():
            if key in known:
                found += unknown_keys(getattr(model, known[key]), value, f"{path}.{key}")
        return found
    if isinstance(model, list):
        assert isinstance(raw, list), f"{path}: the SDK parsed a list from {type(raw).__name__}"
        assert len(raw) == len(model), f"{path}: list lengths differ"
        return [k for i, (m, r) in enumerate(zip(model, raw, strict=True)) for k in unknown_keys(m, r, f"{path}[{i}]")]
    return []


def sdk(url: str, **security: str) -> Fathom:
    return Fathom(security=models.Security(**(security or {"api_key_auth": KEY})), server_url=f"{url}/external/v1")


async def test_every_meetings_page_with_every_include_flag_parses_with_the_sdk_and_has_no_extra_field() -> None:
    state = FathomState(FathomConfig(seed=8, meetings=23))
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        for flags in ({}, ALL_FLAGS, {"include_highlights": True}, {"include_crm_matches": True}):
            params: dict[str, Any] = {k: "true" for k in flags}
            pages, seen = 0, []
            while True:
                response = await http.get("/external/v1/meetings", params=params, headers={"X-Api-Key": KEY})
                assert response.status_code == 200, response.text
                raw = msgspec.json.decode(response.content)
                page = models.MeetingListResponse.model_validate_json(response.content)  # raises on a bad shape
                assert unknown_keys(page, raw) == []
                for item in raw["items"]:
                    for flag, key in LIST_FLAGS.items():
                        assert (key in item) == (flag in flags), f"{key} with flags {sorted(flags)}"
                seen += [m.recording_id for m in page.items]
                pages += 1
                if page.next_cursor is None:
                    break
                params["cursor"] = page.next_cursor
            assert pages == 3
            assert seen == state.index.recording_ids
    # the generated data really exercises the optional parts (else the checks above prove little)
    shapes = [state.meeting(rid) for rid in state.index.recording_ids]
    assert any(m["highlights"] for m in shapes)
    assert any(any("text" in h for h in m["highlights"]) for m in shapes)
    assert any(m["crm_matches"].get("deals") for m in shapes)
    assert any(m["meeting_title"] is None for m in shapes)


async def test_the_sdk_client_pages_lists_and_reads_recordings_from_the_fake() -> None:
    state = FathomState(FathomConfig(seed=9, meetings=14))
    async with serve_in_process(fathom_app(state)) as url, sdk(url) as client:
        listed: list[models.Meeting] = []
        cursor: str | None = None
        while True:
            response = await client.list_meetings_async(
                cursor=cursor,
                include_action_items=True,
                include_crm_matches=True,
                include_highlights=True,
                include_summary=True,
                include_transcript=True,
            )
            assert response is not None
            listed += response.result.items
            cursor = response.result.next_cursor
            if cursor is None:
                break
        assert [m.recording_id for m in listed] == state.index.recording_ids
        assert all(m.transcript and m.default_summary and m.action_items is not None for m in listed)
        newest = listed[0].recording_id
        transcript = await client.get_recording_transcript_async(recording_id=newest)
        assert isinstance(transcript, models.GetRecordingTranscriptResponseBody)
        assert [t.text for t in transcript.transcript] == [t["text"] for t in state.meeting(newest)["transcript"]]
        summary = await client.get_recording_summary_async(recording_id=newest)
        assert isinstance(summary, models.GetRecordingSummaryResponseBody)
        assert summary.summary is not None
        assert summary.summary.markdown_formatted == state.meeting(newest)["default_summary"]["markdown_formatted"]


async def test_recordings_before_their_content_is_ready_still_parse_with_the_sdk() -> None:
    state = FathomState(FathomConfig(seed=10, meetings=2))
    [late] = await state.add_meetings(1, content_delay=60)
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        for part, model in (
            ("transcript", models.GetRecordingTranscriptResponseBody),
            ("summary", models.GetRecordingSummaryResponseBody),
        ):
            response = await http.get(f"/external/v1/recordings/{late}/{part}", headers={"X-Api-Key": KEY})
            assert response.status_code == 200
            parsed = model.model_validate_json(response.content)
            assert unknown_keys(parsed, response.json()) == []
        listed = await http.get("/external/v1/meetings", params=ALL_FLAGS, headers={"X-Api-Key": KEY})
        page = models.MeetingListResponse.model_validate_json(listed.content)
        first = page.items[0]
        assert first.recording_id == late
        assert first.transcript is None  # not ready: an explicit null, which the SDK allows


async def test_oauth_apps_are_refused_embedded_content_as_the_sdk_reports_it() -> None:
    state = FathomState(FathomConfig(seed=11, meetings=3))
    tokens = state.issue_tokens(state.config.default_account)
    async with serve_in_process(fathom_app(state)) as url, sdk(url, bearer_auth=tokens["access_token"]) as client:
        with pytest.raises(errors.APIError) as refused:
            await client.list_meetings_async(include_transcript=True)
        assert refused.value.status_code == 400
        allowed = await client.list_meetings_async(include_action_items=True, include_crm_matches=True)
        assert allowed is not None
        assert len(allowed.result.items) == 3


async def test_a_webhook_made_with_the_sdk_delivers_a_meeting_the_sdk_verifies_and_parses() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    @post("/hook", status_code=204)
    async def hook(request: Request[Any, Any, Any]) -> None:
        received.append((dict(request.headers), await request.body()))

    state = FathomState(FathomConfig(seed=12, meetings=1))
    async with serve_in_process(Litestar([hook])) as sink, serve_in_process(fathom_app(state)) as url:
        async with sdk(url) as client:
            created = await client.create_webhook_async(
                destination_url=f"{sink}/hook",
                triggered_for=[models.CreateWebhookTriggeredFor.MY_RECORDINGS],
                include_action_items=True,
                include_crm_matches=True,
                include_summary=True,
                include_transcript=True,
            )
            assert isinstance(created, models.Webhook)
            assert created.secret.startswith("whsec_")
            sent = state.webhooks[created.id].as_json()
            assert unknown_keys(models.Webhook.model_validate(sent), sent) == []
        [rid] = await state.add_meetings(1)
    [(headers, body)] = received
    payload = Fathom.verify_webhook(created.secret, headers, body.decode())  # raises on a bad signature
    meeting = models.Meeting.model_validate(payload)
    assert meeting.recording_id == rid
    assert unknown_keys(meeting, msgspec.json.decode(body)) == []
    for key in CONTENT_FLAGS.values():
        assert key in payload, key  # every part the webhook asked for
    assert "highlights" not in payload  # not a webhook option
