"""Hypothesis strategies: well-shaped provider objects (every optional part present or not, any
text) and malformed raw events (each one wrong in a way that can never be mapped)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import strategies as st

from callstream.contracts import RawCall

text = st.text(max_size=40)
maybe_text = st.none() | text
emails = st.emails() | text
iso_times = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | text | st.none()
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12
)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict in which every key may be missing."""
    return st.fixed_dictionaries({}, optional=fields)


invitee = _optional(
    name=maybe_text,
    email=st.none() | emails,
    email_domain=st.none() | text,
    is_external=st.none() | st.booleans(),
    matched_speaker_display_name=maybe_text,
)
transcript_item = _optional(
    speaker=st.none() | _optional(display_name=maybe_text, matched_calendar_invitee_email=st.none() | emails),
    text=maybe_text,
    timestamp=maybe_text,
)
fathom_meetings = st.builds(
    lambda rid, rest: {"recording_id": rid, **rest},
    st.integers(min_value=0, max_value=2**62),
    _optional(
        title=maybe_text,
        meeting_title=maybe_text,
        url=maybe_text,
        share_url=maybe_text,
        created_at=iso_times,
        recording_start_time=iso_times,
        recording_end_time=iso_times,
        scheduled_start_time=iso_times,
        calendar_invitees=st.none() | st.lists(invitee, max_size=5),
        recorded_by=st.none() | _optional(name=maybe_text, email=st.none() | emails, team=maybe_text),
        transcript=st.none() | st.lists(transcript_item, max_size=6),
        default_summary=st.none() | _optional(template_name=maybe_text, markdown_formatted=maybe_text),
        action_items=st.none()
        | st.lists(_optional(description=maybe_text, completed=st.none() | st.booleans()), max_size=3),
        crm_matches=st.none() | _optional(companies=st.none() | st.lists(_optional(name=maybe_text), max_size=2)),
        meeting_type=maybe_text,
        unknown_future_field=json_values,
    ),
)

call_ids = st.text(alphabet="0123456789", min_size=1, max_size=20)
context_object = _optional(
    objectType=st.sampled_from(["Account", "Deal", "Opportunity", "Contact", "account", "Lead"]) | maybe_text,
    objectId=maybe_text,
    timing=st.sampled_from(["Now", "TimeOfCall"]) | st.none(),
    fields=st.none() | st.lists(_optional(name=maybe_text, value=json_values), max_size=4),
)
context = _optional(
    system=st.sampled_from(["HubSpot", "hubspot", "Salesforce"]) | maybe_text,
    objects=st.none() | st.lists(context_object, max_size=3),
)
party = _optional(
    id=maybe_text,
    emailAddress=st.none() | emails,
    name=maybe_text,
    userId=maybe_text,
    speakerId=maybe_text,
    affiliation=st.sampled_from(["Internal", "External", "Unknown"]) | st.none(),
    methods=st.none() | st.lists(st.sampled_from(["Invitee", "Attendee"]), max_size=2),
    context=st.none() | st.lists(context, max_size=2),
)
monologue = _optional(
    speakerId=maybe_text,
    topic=maybe_text,
    sentences=st.none() | st.lists(_optional(start=st.integers(0, 10**7), text=maybe_text), max_size=3),
)


@st.composite
def gong_bundles(draw: st.DrawFn) -> dict[str, Any]:
    call_id = draw(call_ids)
    meta = {"id": call_id, **draw(_optional(url=maybe_text, title=maybe_text, started=iso_times,
                                            scheduled=iso_times, duration=st.none() | st.integers(0, 10**5),
                                            primaryUserId=maybe_text))}  # fmt: skip
    call = {"metaData": meta, **draw(_optional(context=st.none() | st.lists(context, max_size=2),
                                                parties=st.none() | st.lists(party, max_size=4),
                                                content=st.none() | st.dictionaries(text, json_values, max_size=3)))}  # fmt: skip
    transcript = draw(
        st.none()
        | st.builds(lambda t: {"callId": call_id, "transcript": t}, st.none() | st.lists(monologue, max_size=4))
    )
    return {"call": call, "transcript": transcript}


def envelope(source_: str, external_id: str, payload: bytes, **changes: Any) -> bytes:
    event = RawCall(
        event_id="ev",
        source=source_,  # type: ignore[arg-type]
        workspace_id="ws1",
        integration_id="int",
        external_id=external_id,
        origin="pull",
        received_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        payload=msgspec.Raw(payload),
    )
    data = msgspec.json.decode(msgspec.json.encode(event))
    data.update(changes)
    return msgspec.json.encode(data)


def well_shaped_events() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(source, external_id, raw event bytes)."""
    fathom = fathom_meetings.map(
        lambda m: ("fathom", str(m["recording_id"]), envelope("fathom", str(m["recording_id"]), msgspec.json.encode(m)))
    )
    gong = gong_bundles().map(
        lambda b: (
            "gong",
            b["call"]["metaData"]["id"],
            envelope("gong", b["call"]["metaData"]["id"], msgspec.json.encode(b)),
        )
    )
    return fathom | gong


_not_an_object = json_values.filter(lambda v: not isinstance(v, dict))
_wrong_id = st.none() | st.text(max_size=5) | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)


def malformed_events() -> st.SearchStrategy[bytes]:
    """Events that can never be mapped, however often they are retried."""
    return st.one_of(
        st.binary(max_size=60).filter(lambda b: not b.strip().startswith(b"{")),
        _not_an_object.map(msgspec.json.encode),
        st.sampled_from([2, "1", None]).map(lambda v: envelope("fathom", "1", b'{"recording_id": 1}', v=v)),
        st.sampled_from(["zoom", None, 3]).map(lambda s: envelope("fathom", "1", b'{"recording_id": 1}', source=s)),
        st.just(envelope("fathom", "1", b'{"recording_id": 1}', workspace_id="bad workspace!")),
        _not_an_object.map(lambda v: envelope("fathom", "1", msgspec.json.encode(v))),
        _wrong_id.map(lambda v: envelope("fathom", "1", msgspec.json.encode({"recording_id": v, "title": "x"}))),
        st.dictionaries(text.filter(lambda k: k != "recording_id"), json_values, max_size=3).map(
            lambda d: envelope("fathom", "1", msgspec.json.encode(d))
        ),
        st.integers(0, 10**6).map(lambda i: envelope("fathom", "1", msgspec.json.encode({"recording_id": i + 2}))),
        _not_an_object.map(lambda v: envelope("gong", "1", msgspec.json.encode({"call": v}))),
        st.integers().map(lambda i: envelope("gong", "1", msgspec.json.encode({"call": {"metaData": {"id": i}}}))),
        st.just(envelope("gong", "1", b'{"call": {"metaData": {"id": "1"}}, "transcript": {"callId": "2"}}')),
        st.just(envelope("gong", "1", b'{"transcript": null}')),
    )
