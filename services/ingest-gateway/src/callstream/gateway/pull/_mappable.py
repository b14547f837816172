"""Pulled calls the normalizer could never map are left out of the page, logged and counted."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from callstream.contracts import RawCall
from callstream.contracts.providers import PayloadRejected, decode_fathom_meeting, decode_gong_bundle
from callstream.runtime import get_logger

log = get_logger(__name__)

SKIPPED = Counter(
    "callstream_gateway_pull_calls_skipped_total",
    "Pulled calls not published because the normalizer could never map them, by reason",
    ["provider", "reason"],
)


def mappable(calls: Sequence[RawCall]) -> list[RawCall]:
    """The calls the normalizer can map, by its own rule (``callstream.contracts.providers``, one
    implementation). One it could never map would only land in its DLQ, and the webhook refuses
    the same bytes with 400: here it is left out with a logged reason and counted, and the rest of
    the page goes on, so one odd call never holds a run or its watermark."""
    kept = []
    for call in calls:
        try:
            if call.source == "fathom":
                decode_fathom_meeting(call.payload)
            else:
                decode_gong_bundle(call.payload)
        except PayloadRejected as exc:
            SKIPPED.labels(call.source, exc.code).inc()
            log.warning(
                "pulled call skipped: the normalizer could never map it",
                provider=call.source,
                integration_id=call.integration_id,
                external_id=call.external_id[:100],
                reason=exc.code,
                detail=exc.detail[:300],
            )
            continue
        kept.append(call)
    return kept
