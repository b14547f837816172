from pathlib import Path

import msgspec
import pytest

from callstream.contracts import GongCallBundle
from callstream.contracts.providers import (
    FathomMeeting,
    FathomMeetingList,
    GongCall,
    GongCallList,
    GongCallTranscript,
    GongTranscriptResponse,
)

EXAMPLES = Path(__file__).parent / "examples"


def _read(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def test_the_documented_fathom_webhook_body_decodes() -> None:
    meeting = msgspec.json.decode(_read("fathom_webhook_meeting.json"), type=FathomMeeting)
    assert isinstance(meeting.recording_id, int)
    assert meeting.transcript
    assert meeting.transcript[0].speaker
    assert meeting.transcript[0].speaker.display_name
    assert meeting.recorded_by is not None
    assert meeting.recorded_by.email
    assert meeting.calendar_invitees
    assert any(i.is_external for i in meeting.calendar_invitees)
    assert meeting.share_url
    assert meeting.share_url.startswith("https://fathom.video/")


def test_the_documented_fathom_meetings_page_decodes_and_keeps_items_raw() -> None:
    page = msgspec.json.decode(_read("fathom_meetings_page.json"), type=FathomMeetingList)
    assert page.next_cursor
    assert len(page.items) == 2
    meetings = [msgspec.json.decode(item, type=FathomMeeting) for item in page.items]
    assert all(isinstance(m.recording_id, int) for m in meetings)
    # the raw bytes of an item are a slice of the page: republishing them is byte for byte
    assert all(bytes(item) in _read("fathom_meetings_page.json") for item in page.items)


def test_the_documented_gong_extensive_page_decodes_with_string_ids() -> None:
    page = msgspec.json.decode(_read("gong_calls_extensive.json"), type=GongCallList)
    calls = [msgspec.json.decode(raw, type=GongCall) for raw in page.calls]
    assert [c.meta_data.id for c in calls] == ["5520183947712650031", "5520184102283719944"]
    first = calls[0]
    assert first.context
    assert first.context[0].system == "HubSpot"
    objects = first.context[0].objects or []
    assert {o.object_type for o in objects} == {"Account", "Deal"}
    amounts = [f.value for o in objects for f in (o.fields or []) if f.name == "amount"]
    assert amounts == [48500]  # context values keep their JSON type
    assert first.parties
    assert first.parties[1].affiliation == "External"


def test_the_documented_gong_transcript_decodes() -> None:
    page = msgspec.json.decode(_read("gong_calls_transcript.json"), type=GongTranscriptResponse)
    transcript = msgspec.json.decode(page.call_transcripts[0], type=GongCallTranscript)
    assert transcript.call_id == "5520183947712650031"
    assert transcript.transcript
    assert transcript.transcript[0].sentences


def test_a_gong_bundle_carries_call_and_transcript_byte_for_byte() -> None:
    page = msgspec.json.decode(_read("gong_calls_extensive.json"), type=GongCallList)
    transcripts = msgspec.json.decode(_read("gong_calls_transcript.json"), type=GongTranscriptResponse)
    bundle = GongCallBundle(call=page.calls[0], transcript=transcripts.call_transcripts[0])
    back = msgspec.json.decode(msgspec.json.encode(bundle), type=GongCallBundle)
    assert bytes(back.call) == bytes(page.calls[0])
    assert back.has_transcript
    assert bytes(back.transcript) == bytes(transcripts.call_transcripts[0])
    without = msgspec.json.decode(msgspec.json.encode(GongCallBundle(call=page.calls[1])), type=GongCallBundle)
    assert not without.has_transcript
    assert not msgspec.json.decode(b'{"call": {}, "transcript": null}', type=GongCallBundle).has_transcript


@pytest.mark.parametrize(
    "body",
    [
        b'{"recording_id": 1}',
        b'{"recording_id": 1, "transcript": null, "default_summary": null, "crm_matches": null}',
        b'{"recording_id": 1, "new_field_from_2027": {"deep": [1]}, "calendar_invitees": []}',
        b'{"recording_id": 1, "crm_matches": {"error": "No CRM connected"}}',
    ],
)
def test_fathom_reader_is_tolerant_of_missing_null_and_unknown_fields(body: bytes) -> None:
    assert msgspec.json.decode(body, type=FathomMeeting).recording_id == 1


def test_fathom_reader_requires_the_identity() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"title": "no id"}', type=FathomMeeting)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"recording_id": "123"}', type=FathomMeeting)


def test_gong_reader_is_tolerant_of_imported_calls_without_parties() -> None:
    call = msgspec.json.decode(
        b'{"metaData": {"id": "12345678901234567890", "extra": 1}, "parties": null, "context": null}', type=GongCall
    )
    assert call.meta_data.id == "12345678901234567890"
    assert call.parties is None
