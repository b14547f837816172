"""DataPointRecorded: exactly one value, the version order, deterministic event ids, the stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from callstream import contracts as c

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def _point(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "dp-1",
        "workspace_id": "acme",
        "message_id": "0b6f4a52-34a1-4c57-9d55-2f1d0e8c7a10",
        "source": "fathom",
        "external_id": "884120457",
        "key": "mrr",
        "category": "revenue",
        "numeric_value": 1200.5,
        "feature_id": "f-1",
        "evidence": {"t": 478.25, "quote": "we pay about twelve hundred a month"},
        "extractor": {"name": "revenue-extractor", "version": "1.4.0"},
        "recorded_at": NOW.isoformat(),
        **overrides,
    }


def test_round_trip() -> None:
    event = msgspec.json.decode(msgspec.json.encode(_point()), type=c.DataPointRecorded)
    assert event.numeric_value == 1200.5
    assert event.evidence == c.Evidence(t=478.25, quote="we pay about twelve hundred a month")
    again = msgspec.json.decode(msgspec.json.encode(event), type=c.DataPointRecorded)
    assert again == event


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"numeric_value": 1.0, "integer_value": 1},
        {"integer_value": 1, "text_value": "x"},
        {"numeric_value": 1.0, "integer_value": 1, "text_value": "x"},
    ],
)
def test_exactly_one_value(values: dict[str, Any]) -> None:
    body = {k: v for k, v in _point().items() if k != "numeric_value"} | values
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.json.decode(msgspec.json.encode(body), type=c.DataPointRecorded)


@pytest.mark.parametrize(
    "bad",
    [
        {"extractor": {"name": "x", "version": "latest"}},
        {"extractor": {"name": "", "version": "1"}},
        {"key": "no spaces"},
        {"evidence": {"t": -1}},
        {"integer_value": 2**63, "numeric_value": None},
        {"workspace_id": "a/b"},
    ],
)
def test_invalid_fields(bad: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(_point(**bad)), type=c.DataPointRecorded)


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.9", "1.10"), ("1", "2"), ("v1.2", "1.3"), ("1.2.3", "1.2.4"), ("0.9.9", "1")],
)
def test_version_order(older: str, newer: str) -> None:
    assert c.extractor_version_order(older) < c.extractor_version_order(newer)


def test_equal_versions() -> None:
    assert c.extractor_version_order("1.2") == c.extractor_version_order("v1.2.0")
    with pytest.raises(ValueError):
        c.extractor_version_order("1.x")


def test_event_id_is_deterministic_and_covers_the_content() -> None:
    ex = c.Extractor(name="e", version="1")
    a = c.data_point_event_id("acme", "m", "mrr", None, ex, b'{"numeric_value":1}')
    assert a == c.data_point_event_id("acme", "m", "mrr", None, ex, b'{"numeric_value":1}')
    assert a != c.data_point_event_id("acme", "m", "mrr", None, ex, b'{"numeric_value":2}')
    assert a != c.data_point_event_id("acme", "m", "mrr", "f", ex, b'{"numeric_value":1}')
    assert a != c.data_point_event_id(
        "acme", "m", "mrr", None, c.Extractor(name="e", version="2"), b'{"numeric_value":1}'
    )


def test_stream_and_consumer() -> None:
    stream = next(s for s in c.STREAMS if s.name == c.DATAPOINTS)
    assert stream.subjects == (c.DATAPOINTS_RECORDED,) == ("datapoints.recorded",)
    assert c.NORMALIZER_DATAPOINTS_CONSUMER in c.CONSUMERS
    assert c.NORMALIZER_DATAPOINTS_CONSUMER.filter_subject == c.DATAPOINTS_RECORDED
