"""The one rule for provider bytes (``callstream.contracts.providers._payloads``): the nesting scan
agrees with a plain tokenizer, and the webhook's fast path accepts exactly what the full rule does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.contracts.providers import (
    MAX_JSON_DEPTH,
    PayloadRejected,
    decode_fathom_meeting,
    decode_gong_bundle,
    fathom_meeting_id,
    nesting_within,
)

EXAMPLES = Path(__file__).parent / "examples"


def reference_depth(text: str) -> int:
    """Nesting depth by a character-by-character JSON tokenizer (strings and escapes honoured)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ab\n\u00e9')), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans(), limit=st.integers(min_value=0, max_value=8))
def test_the_scan_agrees_with_a_tokenizer(value: Any, ensure_ascii: bool, limit: int) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    assert nesting_within(text.encode(), limit) == (reference_depth(text) <= limit)


@pytest.mark.parametrize("depth", [1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5_000])
def test_chains_at_and_around_the_limit(depth: int) -> None:
    for opening, closing in (b"[", b"]"), (b'{"a":', b"}"):
        data = opening * depth + b"1" + closing * depth
        assert nesting_within(data) == (depth <= MAX_JSON_DEPTH)


def test_a_deep_meeting_is_refused_before_any_decode_and_the_documented_one_passes() -> None:
    deep = b'{"recording_id": 1, "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    for rule in (fathom_meeting_id, decode_fathom_meeting):
        with pytest.raises(PayloadRejected) as refused:
            rule(deep)
        assert refused.value.code == "nested_too_deep"
    documented = (EXAMPLES / "fathom_webhook_meeting.json").read_bytes()
    assert fathom_meeting_id(documented) == decode_fathom_meeting(documented).recording_id


_VALUES: list[Any] = [None, 1, "1", "", 1.5, True, [], {}, [{"text": 1}], {"name": 1}, [[1]]]


@pytest.mark.parametrize("field", ["recording_id", "title", "transcript", "recorded_by", "calendar_invitees"])
@pytest.mark.parametrize("value", _VALUES, ids=repr)
def test_the_fast_path_accepts_exactly_what_the_rule_accepts(field: str, value: Any) -> None:
    meeting = json.loads((EXAMPLES / "fathom_webhook_meeting.json").read_text())
    for extra in ({}, {"an_undocumented_field": {"a": [1]}}):
        data = json.dumps(meeting | {field: value} | extra).encode()
        try:
            expected: int | str = decode_fathom_meeting(data).recording_id
        except PayloadRejected as exc:
            expected = exc.code
        try:
            got: int | str = fathom_meeting_id(data)
        except PayloadRejected as exc:
            got = exc.code
        assert got == expected


def _chain(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_gong_bundle_rule() -> None:
    call = {"metaData": {"id": "77"}}
    ok = msgspec.json.encode({"call": call, "transcript": {"callId": "77", "transcript": []}})
    assert decode_gong_bundle(ok)[0].meta_data.id == "77"
    assert decode_gong_bundle(msgspec.json.encode({"call": call}))[1] is None
    for bad, code in (
        ({"call": call, "transcript": {"callId": "78"}}, "not_a_call"),
        ({"call": {"metaData": {}}}, "not_a_call"),
        ({"call": call, "x": _chain(MAX_JSON_DEPTH + 1)}, "nested_too_deep"),  # the bundle adds a level
    ):
        with pytest.raises(PayloadRejected) as refused:
            decode_gong_bundle(msgspec.json.encode(bad))
        assert refused.value.code == code
