"""Data points: values an extractor read from a call, each with the moment it came from.

The product's ``WorkspaceDataPoint`` (workspace, feature, message, ``data_point_key``,
``data_point_category``, and exactly one of a numeric, integer or text value) plus its evidence
(seconds into the recording and a quote) and the extractor that produced it. The linker publishes
one ``DataPointRecorded`` per data point on ``datapoints.recorded``; the normalizer stores them,
one row per (message, key, feature, extractor name); subscribers may read the stream too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ._identity import _digest
from ._messages import Source, WorkspaceId

__all__ = [
    "MAX_DATA_POINT_TEXT",
    "MAX_EVIDENCE_QUOTE",
    "MAX_EVIDENCE_SECONDS",
    "DataPointKey",
    "DataPointRecorded",
    "Evidence",
    "Extractor",
    "ExtractorVersion",
    "IntegerValue",
    "NumericValue",
    "TextValue",
    "data_point_event_id",
    "extractor_version_order",
    "value_count",
]

MAX_DATA_POINT_TEXT = 10_000
MAX_EVIDENCE_QUOTE = 2_000
MAX_EVIDENCE_SECONDS = 7 * 86_400.0  # as the linker's ?t=: no recording is longer than a week
_INT64 = 2**63 - 1

# Keys and categories are identifiers the product filters by (``mrr``, ``urgency_score``).
DataPointKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Dot-separated numbers, optionally after a ``v``: the one form whose order ("which is newer")
# everyone agrees on, so a newer extractor replaces an older one and never the reverse.
_VERSION_PATTERN = r"^v?[0-9]{1,9}(\.[0-9]{1,9}){0,5}$"
ExtractorVersion = Annotated[str, msgspec.Meta(pattern=_VERSION_PATTERN, examples=["1.4.0"])]
_VERSION = re.compile(_VERSION_PATTERN)


class Evidence(msgspec.Struct, kw_only=True, frozen=True):
    """Where in the recording the value was heard: ``t`` seconds from the start, and the words."""

    t: Annotated[float, msgspec.Meta(ge=0, le=MAX_EVIDENCE_SECONDS)] | None = None
    quote: Annotated[str, msgspec.Meta(max_length=MAX_EVIDENCE_QUOTE)] | None = None


class Extractor(msgspec.Struct, kw_only=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    version: ExtractorVersion


NumericValue = Annotated[float, msgspec.Meta(description="a number (stored as double precision)")]
IntegerValue = Annotated[int, msgspec.Meta(ge=-_INT64 - 1, le=_INT64)]
TextValue = Annotated[str, msgspec.Meta(max_length=MAX_DATA_POINT_TEXT)]


def value_count(numeric: float | None, integer: int | None, text: str | None) -> int:
    return sum(v is not None for v in (numeric, integer, text))


class DataPointRecorded(msgspec.Struct, kw_only=True, frozen=True):
    """One data point of one message, published to ``datapoints.recorded``.

    Exactly one of ``numeric_value``, ``integer_value`` and ``text_value`` is set. Stored once per
    (message, key, feature, extractor name): a newer ``extractor.version`` replaces the stored
    value, an older one is ignored, an equal one replaces it (a correction by the same version).
    """

    v: Literal[1] = 1
    event_id: str
    workspace_id: WorkspaceId
    message_id: str
    source: Source
    external_id: str
    key: DataPointKey
    category: DataPointKey
    numeric_value: NumericValue | None = None
    integer_value: IntegerValue | None = None
    text_value: TextValue | None = None
    feature_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    evidence: Evidence | None = None
    extractor: Extractor
    recorded_at: datetime

    def __post_init__(self) -> None:
        if value_count(self.numeric_value, self.integer_value, self.text_value) != 1:
            raise ValueError("exactly one of numeric_value, integer_value and text_value must be set")


def data_point_event_id(
    workspace_id: str,
    message_id: str,
    key: str,
    feature_id: str | None,
    extractor: Extractor,
    content: bytes,
) -> str:
    """The ``Nats-Msg-Id`` (and ``event_id``) of one data point: its identity, its extractor
    version and its content (value and evidence, as encoded), so a resent POST is a duplicate
    and a corrected value is not."""
    return "dp-" + _digest(
        "datapoint", workspace_id, message_id, key, feature_id or "", extractor.name, extractor.version, content
    )


def extractor_version_order(version: str) -> list[int]:
    """The version as numbers to compare (``v1.10`` after ``1.9``; ``1.2`` equals ``1.2.0``)."""
    if not _VERSION.match(version):
        raise ValueError(f"extractor version {version!r} is not dot-separated numbers")
    parts = [int(p) for p in version.removeprefix("v").split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return parts
