"""Fathom's Meeting object (the webhook body and the items of ``GET /meetings``).

Only ``recording_id`` is required: it is the identity. Everything else may be missing or null,
because the ``include_*`` flags, API versions and OAuth restrictions all change what arrives.
"""

from __future__ import annotations

import msgspec


class _Tolerant(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class FathomUser(_Tolerant):
    name: str | None = None
    email: str | None = None
    email_domain: str | None = None
    team: str | None = None


class FathomInvitee(_Tolerant):
    name: str | None = None
    email: str | None = None
    email_domain: str | None = None
    is_external: bool | None = None
    matched_speaker_display_name: str | None = None


class FathomSpeaker(_Tolerant):
    display_name: str | None = None
    matched_calendar_invitee_email: str | None = None


class FathomTranscriptItem(_Tolerant):
    speaker: FathomSpeaker | None = None
    text: str | None = None
    timestamp: str | None = None


class FathomSummary(_Tolerant):
    template_name: str | None = None
    markdown_formatted: str | None = None


class FathomAssignee(_Tolerant):
    name: str | None = None
    email: str | None = None
    team: str | None = None


class FathomActionItem(_Tolerant):
    description: str | None = None
    user_generated: bool | None = None
    completed: bool | None = None
    recording_timestamp: str | None = None
    recording_playback_url: str | None = None
    assignee: FathomAssignee | None = None


class FathomCrmContact(_Tolerant):
    name: str | None = None
    email: str | None = None
    record_url: str | None = None


class FathomCrmCompany(_Tolerant):
    name: str | None = None
    record_url: str | None = None


class FathomCrmDeal(_Tolerant):
    name: str | None = None
    amount: float | None = None
    record_url: str | None = None


class FathomCrmMatches(_Tolerant):
    contacts: list[FathomCrmContact] | None = None
    companies: list[FathomCrmCompany] | None = None
    deals: list[FathomCrmDeal] | None = None
    error: str | None = None


class FathomMeeting(_Tolerant):
    recording_id: int
    title: str | None = None
    meeting_title: str | None = None
    url: str | None = None
    share_url: str | None = None
    created_at: str | None = None
    scheduled_start_time: str | None = None
    scheduled_end_time: str | None = None
    recording_start_time: str | None = None
    recording_end_time: str | None = None
    calendar_invitees_domains_type: str | None = None
    transcript_language: str | None = None
    calendar_invitees: list[FathomInvitee] | None = None
    recorded_by: FathomUser | None = None
    transcript: list[FathomTranscriptItem] | None = None
    default_summary: FathomSummary | None = None
    action_items: list[FathomActionItem] | None = None
    crm_matches: FathomCrmMatches | None = None
    meeting_type: str | None = None
    shared_with: str | None = None
    meeting_url: str | None = None


class FathomMeetingList(_Tolerant):
    """``GET /meetings``: the last page has ``next_cursor`` null (or empty)."""

    items: list[msgspec.Raw] = []
    limit: int | None = None
    next_cursor: str | None = None
