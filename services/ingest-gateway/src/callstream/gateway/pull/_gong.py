"""Gong's API v2 as the pull workers read it: ``/v2/calls/extensive`` over a window and
``/v2/calls/transcript`` by call ids, on the integration's own host.

Each call and transcript entry stays the bytes Gong sent. A 404 whose errors say "No calls found
corresponding to the provided filters" is an empty page; any other 404 is an error. A 400 about
the cursor means it expired: the caller restarts the window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec

from callstream.contracts.providers import GongCallList, GongTranscriptResponse, PayloadRejected

from ._errors import CursorExpired, RunFailed
from ._http import ProviderHttp
from ._shapes import decode_page, gong_call_id, gong_transcript_call_id, provider_time

DEFAULT_API = "https://api.gong.io"
BATCH = 100  # call ids per request (gong.md §2.2, §5.1)
NO_CALLS = "found corresponding to the provided filters"

CONTENT_SELECTOR: dict[str, Any] = {
    "context": "Extended",
    "contextTiming": ["Now", "TimeOfCall"],
    "exposedFields": {
        "parties": True,
        "content": {
            "structure": True,
            "topics": True,
            "trackers": True,
            "pointsOfInterest": True,
            "brief": True,
            "outline": True,
            "highlights": True,
            "callOutcome": True,
            "keyPoints": True,
        },
        "interaction": {"speakers": True, "video": True, "personInteractionStats": True, "questions": True},
        "collaboration": {"publicComments": True},
        "media": False,
    },
}


class _Errors(msgspec.Struct):
    errors: list[str] = []


_calls = msgspec.json.Decoder(GongCallList)
_transcripts = msgspec.json.Decoder(GongTranscriptResponse)
_errors = msgspec.json.Decoder(_Errors)


def gong_api_root(base_url: str | None, default: str = DEFAULT_API) -> str:
    root = (base_url or default).rstrip("/")
    return root.removesuffix("/v2")


def _error_text(response: httpx.Response) -> str:
    try:
        return " ".join(_errors.decode(response.content).errors)
    except (msgspec.DecodeError, RecursionError):  # an error body is read for its words only
        return ""


def is_no_calls(response: httpx.Response) -> bool:
    return response.status_code == 404 and NO_CALLS in _error_text(response)


def is_expired_cursor(response: httpx.Response) -> bool:
    return response.status_code == 400 and "cursor" in _error_text(response).lower()


@dataclass(frozen=True, slots=True)
class CallsPage:
    calls: Sequence[msgspec.Raw]
    next_cursor: str | None


@dataclass
class GongClient:
    http: ProviderHttp
    root: str

    async def _post(self, path: str, body: dict[str, Any], *, with_cursor: bool) -> httpx.Response | None:
        response = await self.http.request("POST", f"{self.root}{path}", content=msgspec.json.encode(body))
        if is_no_calls(response):
            return None
        if with_cursor and is_expired_cursor(response):
            raise CursorExpired(_error_text(response)[:200])
        if response.status_code != 200:
            raise RunFailed(f"gong POST {path} answered HTTP {response.status_code}: {_error_text(response)[:200]}")
        return response

    async def calls(self, start: datetime, end: datetime, cursor: str | None, *, ids_only: bool = False) -> CallsPage:
        """A page of ``/v2/calls/extensive``; ``ids_only``: without a content selector (metaData only),
        the same filter, to list the window's calls."""
        body: dict[str, Any] = {"filter": {"fromDateTime": provider_time(start), "toDateTime": provider_time(end)}}
        if not ids_only:
            body["contentSelector"] = CONTENT_SELECTOR
        if cursor:
            body["cursor"] = cursor
        response = await self._post("/v2/calls/extensive", body, with_cursor=cursor is not None)
        if response is None:
            return CallsPage((), None)
        page = decode_page(_calls, response.content, "gong /v2/calls/extensive")
        return CallsPage(page.calls, page.records.cursor if page.records else None)

    async def calls_by_id(self, call_ids: Sequence[str]) -> dict[str, msgspec.Raw]:
        """Calls of ``/v2/calls/extensive`` by id (100 a request); a call Gong no longer has is missing."""
        found: dict[str, msgspec.Raw] = {}
        for i in range(0, len(call_ids), BATCH):
            cursor: str | None = None
            while True:
                body: dict[str, Any] = {"filter": {"callIds": list(call_ids[i : i + BATCH])}}
                body["contentSelector"] = CONTENT_SELECTOR
                if cursor:
                    body["cursor"] = cursor
                response = await self._post("/v2/calls/extensive", body, with_cursor=False)
                if response is None:
                    break
                page = decode_page(_calls, response.content, "gong /v2/calls/extensive")
                for call in page.calls:
                    with contextlib.suppress(PayloadRejected):  # asked by id: one without an id is not one asked for
                        found[gong_call_id(call)[0]] = call
                cursor = page.records.cursor if page.records else None
                if not cursor:
                    break
        return found

    async def transcripts(self, call_ids: Sequence[str]) -> dict[str, msgspec.Raw]:
        """Each call's entry of ``/v2/calls/transcript``, by call id (missing: none yet)."""
        found: dict[str, msgspec.Raw] = {}
        for i in range(0, len(call_ids), BATCH):
            batch = list(call_ids[i : i + BATCH])
            cursor: str | None = None
            restarts = 0
            while True:
                body: dict[str, Any] = {"filter": {"callIds": batch}}
                if cursor:
                    body["cursor"] = cursor
                try:
                    response = await self._post("/v2/calls/transcript", body, with_cursor=cursor is not None)
                except CursorExpired:
                    restarts += 1
                    if restarts > 3:
                        raise RunFailed("gong transcript cursor kept expiring") from None
                    cursor = None
                    continue
                if response is None:
                    break
                page = decode_page(_transcripts, response.content, "gong /v2/calls/transcript")
                for entry in page.call_transcripts:
                    # one without a call id belongs to no call: that call goes as not transcribed yet
                    with contextlib.suppress(PayloadRejected):
                        found[gong_transcript_call_id(entry)] = entry
                cursor = page.records.cursor if page.records else None
                if not cursor:
                    break
        return found
