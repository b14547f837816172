"""Shared helpers for the normalizer's tests. The example payloads under ``examples/`` are the
synthetic ones of shared/providers/fathom.md §8 and gong.md §9, copied verbatim."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from callstream.contracts import GongCallBundle, RawCall, raw_calls_subject

EXAMPLES = Path(__file__).parent / "examples"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def fathom_meeting(**changes: Any) -> dict[str, Any]:
    meeting = example("fathom_webhook.json")
    meeting.update(changes)
    return meeting


def gong_bundle(index: int = 0, *, transcript: bool = True) -> dict[str, Any]:
    call = example("gong_calls_extensive.json")["calls"][index]
    entries = {t["callId"]: t for t in example("gong_transcripts.json")["callTranscripts"]}
    return {"call": call, "transcript": entries.get(call["metaData"]["id"]) if transcript else None}


def raw_call(
    payload: dict[str, Any] | bytes,
    *,
    source: str | None = None,
    workspace_id: str = "ws1",
    external_id: str | None = None,
    received_at: datetime = T0,
    event_id: str | None = None,
) -> bytes:
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    if isinstance(payload, dict) and source is None:
        source = "gong" if "call" in payload else "fathom"
    if external_id is None and isinstance(payload, dict):
        external_id = str(payload["recording_id"]) if source == "fathom" else str(payload["call"]["metaData"]["id"])
    event = RawCall(
        event_id=event_id or f"ev-{external_id}-{received_at.timestamp()}",
        source=source or "fathom",  # type: ignore[arg-type]
        workspace_id=workspace_id,
        integration_id=f"int-{source}",
        external_id=external_id or "0",
        origin="pull",
        received_at=received_at,
        payload=msgspec.Raw(body),
    )
    return msgspec.json.encode(event)


def subject_of(source: str) -> str:
    return raw_calls_subject(source, f"int-{source}")  # type: ignore[arg-type]


@pytest.fixture
def kit() -> SimpleNamespace:
    return SimpleNamespace(
        example=example,
        fathom_meeting=fathom_meeting,
        gong_bundle=gong_bundle,
        raw_call=raw_call,
        subject_of=subject_of,
        T0=T0,
        later=lambda seconds: T0 + timedelta(seconds=seconds),
        GongCallBundle=GongCallBundle,
    )
