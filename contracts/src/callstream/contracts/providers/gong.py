"""Gong's call objects: ``/v2/calls``, ``/v2/calls/extensive`` and ``/v2/calls/transcript``.

Call ids are strings of up to 20 digits and stay strings. CRM context ``value`` can be a string,
a number, a list or null, so it is kept as any JSON value.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Tolerant(msgspec.Struct, kw_only=True, forbid_unknown_fields=False, rename="camel"):
    pass


class GongRecords(_Tolerant):
    total_records: int | None = None
    current_page_size: int | None = None
    current_page_number: int | None = None
    cursor: str | None = None


class GongCallMetaData(_Tolerant):
    id: str
    url: str | None = None
    title: str | None = None
    scheduled: str | None = None
    started: str | None = None
    duration: float | None = None
    primary_user_id: str | None = None
    direction: str | None = None
    system: str | None = None
    scope: str | None = None
    media: str | None = None
    language: str | None = None
    workspace_id: str | None = None
    meeting_url: str | None = None
    is_private: bool | None = None


class GongContextField(_Tolerant):
    name: str | None = None
    value: Any = None


class GongContextObject(_Tolerant):
    object_type: str | None = None
    object_id: str | None = None
    timing: str | None = None
    fields: list[GongContextField] | None = None


class GongContext(_Tolerant):
    system: str | None = None
    objects: list[GongContextObject] | None = None


class GongParty(_Tolerant):
    id: str | None = None
    email_address: str | None = None
    name: str | None = None
    title: str | None = None
    user_id: str | None = None
    speaker_id: str | None = None
    affiliation: str | None = None
    phone_number: str | None = None
    methods: list[str] | None = None
    context: list[GongContext] | None = None


class GongCall(_Tolerant):
    """One item of ``/v2/calls/extensive`` (``metaData`` plus the requested sections)."""

    meta_data: GongCallMetaData
    context: list[GongContext] | None = None
    parties: list[GongParty] | None = None
    content: dict[str, Any] | None = None
    interaction: dict[str, Any] | None = None


class GongCallList(_Tolerant):
    """``/v2/calls/extensive`` page: calls kept raw so they can be republished byte for byte."""

    request_id: str | None = None
    records: GongRecords | None = None
    calls: list[msgspec.Raw] = []


class GongCallsResponse(_Tolerant):
    """``GET /v2/calls`` page: the flat call list (metadata only)."""

    request_id: str | None = None
    records: GongRecords | None = None
    calls: list[GongCallMetaData] = []


class GongSentence(_Tolerant):
    start: float | None = None
    end: float | None = None
    text: str | None = None


class GongTranscriptMonologue(_Tolerant):
    speaker_id: str | None = None
    topic: str | None = None
    sentences: list[GongSentence] | None = None


class GongCallTranscript(_Tolerant):
    call_id: str
    transcript: list[GongTranscriptMonologue] | None = None


class GongTranscriptResponse(_Tolerant):
    request_id: str | None = None
    records: GongRecords | None = None
    call_transcripts: list[msgspec.Raw] = []
