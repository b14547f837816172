"""Prometheus counters of the normalizer (served by the shared ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

RAW_CALLS = Counter(
    "callstream_normalizer_raw_calls_total",
    "Raw calls handled, by outcome",
    ["outcome"],  # stored (written), unchanged (nothing to write), dead_lettered, retried
)
EVENTS_PUBLISHED = Counter("callstream_normalizer_events_published_total", "MessageUpserted events published")
FEATURE_LINKS = Counter("callstream_normalizer_feature_links_total", "features.linked handled, by outcome", ["outcome"])
