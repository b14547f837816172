"""A gauge whose whole set of series is replaced at once from a periodic read (a table, a stream).

Made for sparse, per-entity series (an integration that is failing, a run that is stuck): a series
that is absent from the newest read disappears, instead of keeping the last value of an entity
that recovered, as a labelled ``Gauge`` would. A scrape sees one read or the next, never a mix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class SnapshotGauge(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self._documentation = documentation
        self._labels = tuple(labels)
        self._values: Mapping[tuple[str, ...], float] = {}
        REGISTRY.register(self)

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        """The series from now on: label values (in the order given at creation) to value."""
        self._values = dict(values)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self._documentation, labels=self._labels)
        for labels, value in self._values.items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self._documentation, labels=self._labels)
