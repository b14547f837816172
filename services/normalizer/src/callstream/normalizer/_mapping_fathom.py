"""A Fathom meeting (webhook body or ``GET /meetings`` item) to a message. Pure: no I/O.

Metadata (shared/DESIGN.md § Message metadata): ``session_id`` (= ``recording_id``), ``title``,
``recording_url`` (the share link) and ``url`` vetted by the link rule or null (:func:`_urls`),
``user_name``/``user_email`` (the recorder), ``duration_seconds``, ``created_at``, ``tags``,
``has_transcript``, ``summary``, ``action_items`` (Fathom's, playback links vetted), ``invitees``,
``talk_time`` (``_talk_time.py``), the old session-analytics keys with neutral values, and
``raw_session_data`` as Fathom sent it. ``ai_insights``: see :func:`_insights`.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import msgspec

from callstream.contracts import DEFAULT_LINK_ALLOW_LIST, HostAllowList, RawCall
from callstream.contracts.providers import FathomMeeting, PayloadRejected, decode_fathom_meeting

from ._domains import domain_of, most_frequent_company_domain, name_from_domain, normalize_domain
from ._mapped import (
    METADATA_VERSION,
    MappedCustomer,
    MappedMessage,
    MappedParticipant,
    UnmappableError,
    ai_insights,
    clean_text,
    encode_json,
    https_host,
    link_refused,
    parse_time,
    safe_url,
)
from ._talk_time import Speaker, clock_seconds, talk_time

CHANNEL = "Fathom"
# Talk time from start-only timings: an item lasts at most its words at 90 words a minute (people
# speak at ~150), and at least a second and a half.
SLOW_WORDS_PER_SECOND = 1.5
MIN_ITEM_SECONDS = 1.5
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
        affiliation = _affiliation(invitee.is_external)
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


def _talk_time(meeting: FathomMeeting) -> dict[str, Any] | None:
    """Fathom sends each transcript item's start (``HH:MM:SS``) only. An item lasts until the next
    one starts (the last one until the recording ends), but never longer than its words take at a
    slow pace (:data:`SLOW_WORDS_PER_SECOND`): a gap after an item is silence or speech not
    transcribed, and counting it would give the last speaker the rest of the call."""
    speakers: dict[str, Speaker] = {}
    by_display: dict[str, Speaker] = {}
    for invitee in meeting.calendar_invitees or ():
        speaker = Speaker(clean_text(invitee.name), invitee.email, _affiliation(invitee.is_external))
        if invitee.email:
            speakers[invitee.email.lower()] = speaker
        for display in (invitee.matched_speaker_display_name, invitee.name):
            if display:
                by_display.setdefault(display, speaker)
    recorder = meeting.recorded_by
    if recorder is not None and recorder.email:
        speakers[recorder.email.lower()] = Speaker(clean_text(recorder.name), recorder.email, "internal")
        if recorder.name:
            by_display.setdefault(recorder.name, speakers[recorder.email.lower()])
    timed: list[tuple[float, str, float]] = []  # (start, speaker, longest it can have lasted)
    # Every item of an hour's transcript passes here on every delivery: the speaker's key is worked
    # out once per (email, display name) as sent, and words are counted by their separating spaces
    # (no list of words built; a cap at a slow pace needs no exact count).
    keys: dict[tuple[str | None, str | None], str] = {}
    for item in meeting.transcript or ():
        start = clock_seconds(item.timestamp)
        if start is None:
            continue
        sent = (
            (item.speaker.matched_calendar_invitee_email, item.speaker.display_name) if item.speaker else (None, None)
        )
        key = keys.get(sent)
        if key is None:
            email, display = (sent[0] or "").lower(), sent[1] or ""
            key = keys[sent] = email or f"name:{display}"
            if key not in speakers:  # someone no invitee or recorder names: affiliation unknown
                speakers[key] = (None if email else by_display.get(display)) or Speaker(
                    clean_text(display) or None, email or None, "unknown"
                )
        text = item.text
        longest = (text.count(" ") + 1) / SLOW_WORDS_PER_SECOND if text else 0.0
        timed.append((start, key, longest if longest > MIN_ITEM_SECONDS else MIN_ITEM_SECONDS))
    started = parse_time(meeting.recording_start_time)
    ended = parse_time(meeting.recording_end_time)
    length = (ended - started).total_seconds() if started and ended else None
    timed.sort(key=itemgetter(0))
    # each item ends when the next starts (the last one when the recording ends), at the latest
    # after its words: ``nexts`` is each item's successor's start
    if not timed:
        return None
    nexts = [start for start, _, _ in timed[1:]]
    nexts.append(length if length and length > timed[-1][0] else float("inf"))
    segments = [
        (key, start, until if until < start + longest else start + longest)
        for (start, key, longest), until in zip(timed, nexts, strict=True)
    ]
    return talk_time(segments, speakers, in_order=True)


def _affiliation(is_external: bool | None) -> str:
    return {True: "external", False: "internal"}.get(is_external, "unknown")  # type: ignore[arg-type]


def _key_points(summary: str | None) -> list[str]:
    """The bullets under the summary's "Key Takeaways" heading (Fathom's General template)."""
    points: list[str] = []
    inside = False
    for line in (summary or "").splitlines():
        text = line.strip()
        if text.startswith("#"):
            inside = "key takeaway" in text.lower()
            continue
        if inside and text[:2] in ("- ", "* ", "+ ") and (point := text[2:].strip()):
            points.append(point)
    return points


def _insights(meeting: FathomMeeting, summary: str | None) -> dict[str, Any]:
    """Fathom's summary (markdown), the bullets of its "Key Takeaways", and its action items with
    their assignee and second; Fathom has no topics or outcome."""
    return ai_insights(
        summary=summary,
        key_points=_key_points(summary),
        action_items=[
            {
                "text": item.description,
                "assignee": (item.assignee.name or item.assignee.email) if item.assignee else None,
                "t": clock_seconds(item.recording_timestamp),
            }
            for item in meeting.action_items or ()
            if item.description
        ],
    )


def _action_items(meeting: FathomMeeting, links: HostAllowList) -> list[dict[str, Any]]:
    """Fathom's action items as sent, the playback link vetted (a UI renders it)."""
    return [
        {
            "description": item.description,
            "user_generated": item.user_generated,
            "completed": item.completed,
            "recording_timestamp": item.recording_timestamp,
            "recording_playback_url": safe_url(item.recording_playback_url, links),
            "assignee": item.assignee,
        }
        for item in meeting.action_items or ()
    ]


def _crm_matches(meeting: FathomMeeting, links: HostAllowList) -> dict[str, Any] | None:
    """The CRM match as sent, each ``record_url`` vetted (CRM hosts are not on the allow list
    unless an operator adds them, so they are usually null here; raw_session_data keeps them)."""
    crm = meeting.crm_matches
    if crm is None:
        return None

    def vetted(items: list[Any] | None) -> list[dict[str, Any]] | None:
        if items is None:
            return None
        return [{**msgspec.structs.asdict(item), "record_url": safe_url(item.record_url, links)} for item in items]

    return {
        "contacts": vetted(crm.contacts),
        "companies": vetted(crm.companies),
        "deals": vetted(crm.deals),
        "error": crm.error,
    }


def _urls(meeting: FathomMeeting, links: HostAllowList) -> tuple[str | None, str | None]:
    """``recording_url`` (the share link) and ``url`` as a UI may render them. By the linker's rule
    the first link present decides: when the share link is refused, ``url`` is not offered in its
    place either (so the row, the event and the linker agree: no link), and the values as sent stay
    in ``raw_session_data``."""
    recording, url = safe_url(meeting.share_url, links), safe_url(meeting.url, links)
    if meeting.share_url and recording is None:
        return None, None
    return recording, url


def map_fathom(raw: RawCall, links: HostAllowList = DEFAULT_LINK_ALLOW_LIST) -> MappedMessage:
    meeting = decode_meeting(raw.payload)
    content = transcript_text(meeting)
    started = parse_time(meeting.recording_start_time)
    ended = parse_time(meeting.recording_end_time)
    recorder = meeting.recorded_by
    summary = meeting.default_summary.markdown_formatted if meeting.default_summary else None
    recording_url, url = _urls(meeting, links)
    metadata: dict[str, Any] = {
        "metadata_version": METADATA_VERSION,
        "session_id": meeting.recording_id,
        "title": meeting.title or meeting.meeting_title,
        "recording_url": recording_url,
        "url": url,
        "user_email": recorder.email if recorder else None,
        "user_name": recorder.name if recorder else None,
        "duration_seconds": int((ended - started).total_seconds()) if started and ended else None,
        "created_at": meeting.created_at,
        "tags": [meeting.meeting_type] if meeting.meeting_type else [],
        "has_transcript": bool(content),
        "summary": summary,
        "action_items": _action_items(meeting, links),
        "invitees": meeting.calendar_invitees or [],
        "meeting_title": meeting.meeting_title,
        "scheduled_start_time": meeting.scheduled_start_time,
        "scheduled_end_time": meeting.scheduled_end_time,
        "recording_start_time": meeting.recording_start_time,
        "recording_end_time": meeting.recording_end_time,
        "transcript_language": meeting.transcript_language,
        "crm_matches": _crm_matches(meeting, links),
        "talk_time": _talk_time(meeting),
        **NEUTRAL_SESSION_ANALYTICS,
        "raw_session_data": raw.payload,
    }
    link = meeting.share_url or meeting.url
    refused = link_refused(link, links)
    if refused is not None:
        metadata["link_refused"] = refused
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
        ai_insights_json=encode_json(_insights(meeting, summary)),
        link_url=link,
        provider_host=https_host(link),
        observed_at=raw.received_at,
        traceparent=raw.traceparent,
        run_id=raw.run_id,
        participants=_participants(meeting),
        customer=_customer(meeting),
    )
