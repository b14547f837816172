"""What an operator needs to see of the hot-link cache, read at scrape time: nothing per request.

One collector per process, registered once, reading every linker app built in it (one in a
deployment; tests build several, and a per-app registration would collide on metric names)."""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ._cache import LinkCache, MessageEventFeed
from ._hot import HotLinks


class _LinkCacheCollector(Collector):
    def __init__(self) -> None:
        self._apps: weakref.WeakKeyDictionary[HotLinks, tuple[str, LinkCache, MessageEventFeed]] = (
            weakref.WeakKeyDictionary()
        )

    def track(self, service: str, hot: HotLinks, cache: LinkCache, feed: MessageEventFeed) -> None:
        self._apps[hot] = (service, cache, feed)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        answered = CounterMetricFamily(
            "callstream_linker_links_from_memory",
            "GET /v1/links answered from the hot-link cache, in front of the framework, by interface",
            labels=["service", "interface"],
        )
        live = GaugeMetricFamily(
            "callstream_linker_link_cache_live",
            "1 while the message event feed is live and cached links may be served, else 0",
            labels=["service"],
        )
        entries = GaugeMetricFamily("callstream_linker_link_cache_entries", "Links held in memory", labels=["service"])
        # One series per label set, however many apps carry the same service name.
        counts: dict[tuple[str, str], int] = defaultdict(int)
        lives: dict[str, int] = defaultdict(int)
        sizes: dict[str, int] = defaultdict(int)
        for hot, (service, cache, feed) in list(self._apps.items()):
            counts[service, "rsgi"] += hot.answered_rsgi
            counts[service, "asgi"] += hot.answered - hot.answered_rsgi
            lives[service] = max(lives[service], int(feed.state().live))
            sizes[service] += len(cache)
        for labels, count in counts.items():
            answered.add_metric(list(labels), count)
        for service in lives:
            live.add_metric([service], lives[service])
            entries.add_metric([service], sizes[service])
        yield from (answered, live, entries)


LINK_CACHE_METRICS = _LinkCacheCollector()
REGISTRY.register(LINK_CACHE_METRICS)
