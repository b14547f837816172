"""Fathom's External API as the pull workers read it (``GET /meetings``, ``/recordings/*``).

Meetings stay the bytes Fathom sent. For OAuth integrations, which may not ask ``/meetings`` for
transcripts or summaries, both are fetched per recording (heavy requests) and set into the meeting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from callstream.contracts.providers import FathomMeetingList

from ._errors import CursorExpired, RunFailed
from ._http import ProviderHttp
from ._shapes import NULL, decode_page, provider_time, with_fields

DEFAULT_API = "https://api.fathom.ai/external/v1"
API_PATH = "/external/v1"
LIST_FLAGS = ("include_action_items", "include_crm_matches")
EMBEDDED_CONTENT = ("include_transcript", "include_summary")


# msgspec.Raw takes any JSON value, null included (it cannot sit in a union with None).
class _Transcript(msgspec.Struct):
    transcript: msgspec.Raw = msgspec.field(default_factory=lambda: NULL)


class _Summary(msgspec.Struct):
    summary: msgspec.Raw = msgspec.field(default_factory=lambda: NULL)


_page = msgspec.json.Decoder(FathomMeetingList)
_transcript = msgspec.json.Decoder(_Transcript)
_summary = msgspec.json.Decoder(_Summary)


def fathom_api_root(base_url: str | None, default: str = DEFAULT_API) -> str:
    """The API root ending in ``/external/v1``, from an integration's host override or the default."""
    root = (base_url or default).rstrip("/")
    return root if root.endswith(API_PATH) else root + API_PATH


class RecordingGone(Exception):
    """Listed, but its recording answers 404 (transcript and summary both): deleted at Fathom."""

    def __init__(self, recording_id: int) -> None:
        super().__init__(recording_id)
        self.recording_id = recording_id


@dataclass(frozen=True, slots=True)
class MeetingsPage:
    meetings: Sequence[msgspec.Raw]
    next_cursor: str | None


@dataclass
class FathomClient:
    http: ProviderHttp
    root: str
    embed_content: bool  # API keys may embed transcript and summary; OAuth apps may not

    def list_params(
        self, start: datetime | None, end: datetime | None, cursor: str | None, *, ids_only: bool = False
    ) -> list[tuple[str, str]]:
        params = [] if ids_only else [(flag, "true") for flag in LIST_FLAGS]
        if self.embed_content and not ids_only:
            params += [(flag, "true") for flag in EMBEDDED_CONTENT]
        if start is not None:
            params.append(("created_after", provider_time(start)))
        if end is not None:
            params.append(("created_before", provider_time(end)))
        if cursor:
            params.append(("cursor", cursor))
        return params

    async def meetings(
        self, start: datetime | None, end: datetime | None, cursor: str | None, *, ids_only: bool = False
    ) -> MeetingsPage:
        """A page of meetings; ``ids_only``: without any content (a light request), to list them."""
        response = await self.http.request(
            "GET",
            f"{self.root}/meetings",
            heavy=self.embed_content and not ids_only,
            params=self.list_params(start, end, cursor, ids_only=ids_only),
        )
        if response.status_code == 400 and cursor:
            raise CursorExpired(response.text[:200])
        if response.status_code != 200:
            raise RunFailed(f"fathom GET /meetings answered HTTP {response.status_code}")
        page = decode_page(_page, response.content, "fathom GET /meetings")
        return MeetingsPage(page.items, page.next_cursor or None)

    async def _content(self, recording_id: int, part: str) -> msgspec.Raw | None:
        """The part, ``null`` when Fathom has none, ``None`` when the recording answers 404."""
        response = await self.http.request("GET", f"{self.root}/recordings/{recording_id}/{part}", heavy=True)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RunFailed(f"fathom GET /recordings/{{id}}/{part} answered HTTP {response.status_code}")
        what = f"fathom GET /recordings/{{id}}/{part}"
        if part == "transcript":
            return decode_page(_transcript, response.content, what).transcript
        return decode_page(_summary, response.content, what).summary

    async def with_content(self, meeting: msgspec.Raw, recording_id: int) -> bytes:
        """The meeting with its transcript and summary from ``/recordings`` (OAuth integrations)."""
        transcript, summary = await asyncio.gather(
            self._content(recording_id, "transcript"), self._content(recording_id, "summary")
        )
        if transcript is None and summary is None:
            raise RecordingGone(recording_id)
        return with_fields(
            meeting,
            {
                "transcript": transcript if transcript is not None else NULL,
                "default_summary": summary if summary is not None else NULL,
            },
        )
