"""Pulled calls the normalizer could never map are left out of the page, logged and counted.

The rule is the normalizer's own (``callstream.contracts.providers``, one implementation): one it
could never map would only land in its DLQ, and the webhook refuses the same bytes with 400. The
runs apply it to each call once, as they build the page (the decode that checks it also reads the
Fathom meeting's id), so one odd call never holds a run or its watermark and costs the common path
no second decode.
"""

from __future__ import annotations

import msgspec
from prometheus_client import Counter

from callstream.contracts import Source
from callstream.contracts.providers import PayloadRejected, decode_fathom_meeting, decode_gong_bundle
from callstream.runtime import get_logger

log = get_logger(__name__)

SKIPPED = Counter(
    "callstream_gateway_pull_calls_skipped_total",
    "Pulled calls not published because the normalizer could never map them, by reason",
    ["provider", "reason"],
)


def fathom_meeting_id(data: bytes | msgspec.Raw) -> int:
    """The ``recording_id`` of a meeting the normalizer can map; :class:`PayloadRejected` otherwise."""
    return decode_fathom_meeting(data).recording_id


def check_gong_bundle(data: bytes) -> None:
    """:class:`PayloadRejected` for a Gong bundle the normalizer could never map."""
    decode_gong_bundle(data)


def skipped(
    provider: Source, integration_id: str, run_id: str, rejected: PayloadRejected, external_id: str | None
) -> None:
    """Log and count one call left out. Ids only: the detail names a rule and a JSON path (msgspec's
    errors never quote values), and an id that could not be read is not logged at all."""
    SKIPPED.labels(provider, rejected.code).inc()
    log.warning(
        "pulled call skipped: the normalizer could never map it",
        provider=provider,
        integration_id=integration_id,
        run_id=run_id,
        external_id=external_id[:100] if external_id is not None else None,
        reason=rejected.code,
        detail=rejected.detail[:300],
    )
