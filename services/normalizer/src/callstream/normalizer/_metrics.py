"""Prometheus counters of the normalizer (served by the shared ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RAW_CALLS = Counter(
    "callstream_normalizer_raw_calls_total",
    "Raw calls handled, by outcome",
    ["outcome"],  # stored (written), unchanged (nothing to write), dead_lettered, retried, erased (dropped)
)
EVENTS_PUBLISHED = Counter("callstream_normalizer_events_published_total", "MessageUpserted events published")
FEATURE_LINKS = Counter("callstream_normalizer_feature_links_total", "features.linked handled, by outcome", ["outcome"])
BATCH_MESSAGES = Histogram(
    "callstream_normalizer_batch_messages",
    "Raw calls per stored batch (one transaction)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_STORE_SECONDS = Histogram(
    "callstream_normalizer_batch_store_seconds",
    "Time to store one batch, its transaction from connection to commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
