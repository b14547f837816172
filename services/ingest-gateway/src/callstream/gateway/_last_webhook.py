"""When each integration last had a webhook accepted, for the "webhooks stopped" alert.

One dict store per accepted webhook (about 0.1 µs: no label lookup, no lock; the event loop is the
only writer); the gauge is built from the dict when ``/metrics`` is scraped. One series per
integration that has had a webhook since the process started: as many as there are Fathom
integrations using webhooks, which is the number the alert is about.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

NAME = "callstream_gateway_webhook_last_accepted_timestamp_seconds"

last_accepted: dict[str, float] = {}


class _LastWebhook(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            NAME, "Unix time of the last webhook accepted (202) for each integration", labels=["integration_id"]
        )
        for integration_id, at in list(last_accepted.items()):
            family.add_metric([integration_id], at)
        yield family


REGISTRY.register(_LastWebhook())
