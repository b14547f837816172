"""A Fathom meeting (webhook body or ``GET /meetings`` item) to a message. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from callstream.contracts import RawCall
from callstream.contracts.providers import FathomMeeting, PayloadRejected, decode_fathom_meeting

from ._domains import domain_of, most_frequent_company_domain, name_from_domain, normalize_domain
from ._mapped import (
    MappedCustomer,
    MappedMessage,
    MappedParticipant,
    UnmappableError,
    clean_text,
    encode_json,
    https_host,
    parse_time,
)

CHANNEL = "Fathom"
UNKNOWN_SPEAKER = "Unknown speaker"

# The old session-analytics keys existing consumers still read; meetings carry none of them.
NEUTRAL_SESSION_ANALYTICS: dict[str, Any] = {
    "page_url": None,
    "device_type": None,
    "browser": None,
    "os": None,
    "rage_clicks": 0,
    "error_clicks": 0,
    "dead_clicks": 0,
    "frustrated_gestures": 0,
    "events_count": 0,
}


def decode_meeting(payload: bytes) -> FathomMeeting:
    """By the rule the gateway applies before it accepts a meeting (one implementation, in contracts)."""
    try:
        return decode_fathom_meeting(payload)
    except PayloadRejected as exc:
        raise UnmappableError(exc.detail) from None


def transcript_text(meeting: FathomMeeting) -> str:
    lines = []
    for item in meeting.transcript or ():
        if not item.text:
            continue
        speaker = item.speaker
        name = (speaker.display_name or speaker.matched_calendar_invitee_email) if speaker else None
        lines.append(f"{name or UNKNOWN_SPEAKER}: {item.text}")
    return clean_text("\n".join(lines)) or ""


def _participants(meeting: FathomMeeting) -> tuple[MappedParticipant, ...]:
    found: list[MappedParticipant] = []
    recorder = meeting.recorded_by
    recorder_email = (recorder.email or "").lower() if recorder else ""
    if recorder is not None:
        found.append(MappedParticipant(clean_text(recorder.name), recorder.email, "internal", None, "recorder"))
    for invitee in meeting.calendar_invitees or ():
        if recorder_email and (invitee.email or "").lower() == recorder_email:
            continue
        affiliation = {True: "external", False: "internal"}.get(invitee.is_external, "unknown")  # type: ignore[arg-type]
        found.append(
            MappedParticipant(
                clean_text(invitee.name), invitee.email, affiliation, invitee.matched_speaker_display_name, "invitee"
            )
        )
    return tuple(found)


def _customer(meeting: FathomMeeting) -> MappedCustomer | None:
    external = [
        normalize_domain(invitee.email_domain) or domain_of(invitee.email)
        for invitee in meeting.calendar_invitees or ()
        if invitee.is_external
    ]
    domain = most_frequent_company_domain(external)
    if domain is None:
        return None
    companies = [c for c in (meeting.crm_matches.companies or ()) if c.name] if meeting.crm_matches else []
    name = companies[0].name if companies else name_from_domain(domain)
    attributes = {"crm_companies": companies} if companies else {}
    return MappedCustomer(domain=domain, name=clean_text(name), attributes_json=encode_json(attributes))


def map_fathom(raw: RawCall) -> MappedMessage:
    meeting = decode_meeting(raw.payload)
    content = transcript_text(meeting)
    started = parse_time(meeting.recording_start_time)
    ended = parse_time(meeting.recording_end_time)
    recorder = meeting.recorded_by
    summary = meeting.default_summary.markdown_formatted if meeting.default_summary else None
    metadata: dict[str, Any] = {
        "session_id": meeting.recording_id,
        "title": meeting.title or meeting.meeting_title,
        "recording_url": meeting.share_url,
        "url": meeting.url,
        "user_email": recorder.email if recorder else None,
        "user_name": recorder.name if recorder else None,
        "duration_seconds": int((ended - started).total_seconds()) if started and ended else None,
        "created_at": meeting.created_at,
        "tags": [meeting.meeting_type] if meeting.meeting_type else [],
        "has_transcript": bool(content),
        "summary": summary,
        "action_items": meeting.action_items or [],
        "invitees": meeting.calendar_invitees or [],
        "meeting_title": meeting.meeting_title,
        "scheduled_start_time": meeting.scheduled_start_time,
        "scheduled_end_time": meeting.scheduled_end_time,
        "recording_start_time": meeting.recording_start_time,
        "recording_end_time": meeting.recording_end_time,
        "transcript_language": meeting.transcript_language,
        "crm_matches": meeting.crm_matches,
        **NEUTRAL_SESSION_ANALYTICS,
        "raw_session_data": raw.payload,
    }
    insights: dict[str, Any] = {}
    if summary:
        insights["summary"] = summary
    if meeting.action_items:
        insights["action_items"] = [item.description for item in meeting.action_items if item.description]
    link = meeting.share_url or meeting.url
    return MappedMessage(
        workspace_id=raw.workspace_id,
        source="fathom",
        external_id=str(meeting.recording_id),
        integration_id=raw.integration_id,
        title=clean_text(meeting.title or meeting.meeting_title),
        content=content,
        channel_name=CHANNEL,
        channel_id=raw.integration_id,
        author_name=clean_text(recorder.name) if recorder else None,
        author_id=recorder.email if recorder else None,
        author_email=recorder.email if recorder else None,
        sent_at=started or parse_time(meeting.scheduled_start_time) or parse_time(meeting.created_at),
        metadata_json=encode_json(metadata),
        ai_insights_json=encode_json(insights) if insights else None,
        link_url=link,
        provider_host=https_host(link),
        observed_at=raw.received_at,
        traceparent=raw.traceparent,
        participants=_participants(meeting),
        customer=_customer(meeting),
    )
