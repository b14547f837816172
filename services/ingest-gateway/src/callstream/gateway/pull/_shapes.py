"""Pure helpers over provider bytes: identities, windows as the providers write them, the RawCall
envelope. The provider's JSON is never re-serialized where it can be passed on as it came."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from callstream.contracts import GongCallBundle, RawCall, Source, pull_event_id
from callstream.contracts.providers import MAX_JSON_DEPTH, PayloadRejected

from ._errors import RunFailed

T = TypeVar("T")


class _FathomIdentity(msgspec.Struct):
    recording_id: int


class GongCallFacts(msgspec.Struct, rename="camel"):
    """What the pull workers read of a Gong call's ``metaData``."""

    id: str
    started: str | None = None
    is_private: bool | None = None


class _GongIdentity(msgspec.Struct, rename="camel"):
    meta_data: GongCallFacts


class _TranscriptIdentity(msgspec.Struct, rename="camel"):
    call_id: str


_fathom_id = msgspec.json.Decoder(_FathomIdentity)
_gong_id = msgspec.json.Decoder(_GongIdentity)
_transcript_id = msgspec.json.Decoder(_TranscriptIdentity)
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])


def fathom_recording_id(meeting: msgspec.Raw) -> int:
    """The meeting's ``recording_id``; :class:`PayloadRejected` when it has none that is an integer."""
    try:
        return _fathom_id.decode(meeting).recording_id
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:  # msgspec's errors name paths, never values
        raise PayloadRejected("not_a_meeting", f"not a Fathom meeting: {exc}") from None


def gong_call_facts(call: msgspec.Raw) -> GongCallFacts:
    """The call's ``metaData``; :class:`PayloadRejected` when it has no string ``id``."""
    try:
        return _gong_id.decode(call).meta_data
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadRejected("not_a_call", f"not a Gong call: {exc}") from None


def gong_call_id(call: msgspec.Raw) -> tuple[str, str | None]:
    """The call's id and its ``started`` time as Gong wrote it."""
    meta = gong_call_facts(call)
    return meta.id, meta.started


# What a private Gong call must not carry out of the gateway: its transcript is never requested,
# and these sections hold what was said (``content``: brief, key points, highlights, outline and
# the verbatim ``pointsOfInterest`` snippets; ``collaboration``: comments on moments of the call).
PRIVATE_CALL_SECTIONS = ("content", "collaboration")


def private_call(call: msgspec.Raw) -> bytes:
    """A private call as the pull workers publish it: its metadata, CRM context, parties and
    interaction statistics byte for byte, without the sections that hold what was said."""
    return without_fields(call, PRIVATE_CALL_SECTIONS)


def gong_transcript_call_id(entry: msgspec.Raw) -> str:
    """The entry's ``callId``; :class:`PayloadRejected` when it has none that is a string."""
    try:
        return _transcript_id.decode(entry).call_id
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadRejected("not_a_call", f"not a Gong transcript: {exc}") from None


def with_fields(obj: msgspec.Raw, fields: dict[str, msgspec.Raw]) -> bytes:
    """``obj`` with ``fields`` set (replacing a key that is there, e.g. ``"transcript": null``);
    every other value keeps its bytes and its place."""
    merged = _fields.decode(obj)
    merged.update(fields)
    return msgspec.json.encode(merged)


def without_fields(obj: msgspec.Raw, names: tuple[str, ...]) -> bytes:
    """``obj`` without the keys ``names``; every other value keeps its bytes and its place."""
    kept = _fields.decode(obj)
    if not any(name in kept for name in names):
        return bytes(obj)
    for name in names:
        kept.pop(name, None)
    return msgspec.json.encode(kept)


NULL = msgspec.Raw(b"null")


# A JSON string (escapes included) or one bracket: what :func:`shallow_page` has to look at.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


def shallow_page(page: bytes, limit: int = MAX_JSON_DEPTH) -> bytes:
    """``page`` (a provider's page: an object whose arrays hold the items) with every array or
    object that opens more than ``limit`` levels deep inside an item (``limit + 2`` in the page,
    wherever it is) emptied to ``[]``.

    For a page msgspec cannot decode at all: its C decoder raises ``RecursionError`` near 1,000
    levels, wherever they are. Cut at ``limit + 1`` levels such an item is still deeper than the
    payload rule allows, so the rule refuses it (``nested_too_deep``) like any item 65 levels deep,
    while the page, its cursor, its other items and the odd item's id can be read. A scan in
    Python, so only for that rare page; unbalanced bytes come back as they are (the decode that
    follows says what is wrong)."""
    cut = limit + 3  # the page is level 1, its array 2, an item 3: the item's level limit+1
    pieces: list[bytes] = []
    kept_to, depth, region = 0, 0, -1
    for token in _TOKENS.finditer(page):
        char = page[token.start()]
        if char == 0x22:  # a string: whatever it holds is no structure
            continue
        if char in _OPEN:
            depth += 1
            if depth == cut:
                region = token.start()
            continue
        if depth == 0:
            return page
        if depth == cut:
            pieces += (page[kept_to:region], b"[]")
            kept_to = token.end()
        depth -= 1
    if not pieces:
        return page
    pieces.append(page[kept_to:])
    return b"".join(pieces)


def decode_page(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """A provider's page. One whose items are nested too deep to decode is read through
    :func:`shallow_page` (the odd items are then refused one by one by the payload rule). A page
    that still cannot be read (not JSON, not the page's shape) fails the run: its cursor is
    unknown, so nothing past it can be fetched, and skipping the rest of the window would lose
    its calls without a trace. The run ends with the error (no redelivery, it
    would read the same bytes) and the integration's next sync asks the provider again."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RunFailed(f"{what} sent an unreadable page: {exc}") from None
    except RecursionError:
        pass
    try:
        return decoder.decode(shallow_page(body))
    except (msgspec.DecodeError, RecursionError) as exc:
        raise RunFailed(f"{what} sent a page nested too deep to read: {type(exc).__name__}") from None


def gong_bundle(call: msgspec.Raw, transcript: msgspec.Raw | None) -> bytes:
    return msgspec.json.encode(GongCallBundle(call=call, transcript=transcript if transcript is not None else NULL))


def provider_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC: what both providers document and accept reliably."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def raw_call(
    *,
    source: Source,
    workspace_id: str,
    integration_id: str,
    external_id: str,
    payload: bytes,
    traceparent: str | None,
    received_at: datetime,
    run_id: str | None = None,
) -> RawCall:
    return RawCall(
        event_id=pull_event_id(integration_id, external_id, payload),
        source=source,
        workspace_id=workspace_id,
        integration_id=integration_id,
        external_id=external_id,
        origin="pull",
        received_at=received_at,
        traceparent=traceparent,
        run_id=run_id,
        payload=msgspec.Raw(payload),
    )
