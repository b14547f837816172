"""Pure helpers over provider bytes: identities, windows as the providers write them, the RawCall
envelope. The provider's JSON is never re-serialized where it can be passed on as it came."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import msgspec

from callstream.contracts import GongCallBundle, RawCall, Source, pull_event_id


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
    return _fathom_id.decode(meeting).recording_id


def gong_call_facts(call: msgspec.Raw) -> GongCallFacts:
    return _gong_id.decode(call).meta_data


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
    return _transcript_id.decode(entry).call_id


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
        payload=msgspec.Raw(payload),
    )
