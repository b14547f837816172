"""What waits in JetStream for a service: each of its durable consumers' pending and unacknowledged
messages, and the dead letters on its ``dlq.<consumer>`` subjects.

Read by a background worker every few seconds (one ``consumer_info`` per durable and one
``stream_info`` of the DLQ stream), never per message, and served from the gauges it sets. Each
service reports the consumers it owns, so a replica count of N gives N equal series: dashboards and
alerts take ``max`` over instances.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats.errors
from nats.js.errors import NotFoundError
from prometheus_client import Gauge

from callstream.contracts import DLQ, ConsumerSpec

from ._logging import get_logger
from ._supervisor import periodic

log = get_logger(__name__)

DEFAULT_BACKLOG_SECONDS = 5.0  # a scrape every 15-30 s sees a value at most this old

CONSUMER_PENDING = Gauge(
    "callstream_jetstream_consumer_pending",
    "Messages in the stream not yet delivered to the durable consumer (num_pending)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "callstream_jetstream_consumer_ack_pending",
    "Messages delivered to the durable consumer and not yet acknowledged (num_ack_pending)",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "callstream_jetstream_consumer_redelivered",
    "Unacknowledged messages delivered more than once (num_redelivered)",
    ["stream", "consumer"],
)
DLQ_MESSAGES = Gauge("callstream_dlq_messages", "Dead letters kept in the DLQ stream, by subject", ["subject"])
COLLECTED = Gauge(
    "callstream_backlog_collected_timestamp_seconds",
    "When the consumer and DLQ figures were last read from JetStream (unix time)",
    ["service"],
)

# The broker away or slow: the broker check of readiness says so; the figures keep their last value
# and ``callstream_backlog_collected_timestamp_seconds`` stops moving.
_TRANSIENT = (nats.errors.Error, TimeoutError, ConnectionError)


async def read_backlog(js: Any, consumers: Sequence[ConsumerSpec], dlq_subjects: Sequence[str]) -> None:
    """Set the gauges from one look at JetStream. A consumer or stream not declared yet is skipped."""
    for spec in consumers:
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            continue
        CONSUMER_PENDING.labels(spec.stream, spec.durable).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(spec.stream, spec.durable).set(info.num_ack_pending or 0)
        CONSUMER_REDELIVERED.labels(spec.stream, spec.durable).set(info.num_redelivered or 0)
    if dlq_subjects:
        try:
            # One subject filter per subject would cost a request each; the DLQ stream has a handful.
            stream = await js.stream_info(DLQ, subjects_filter="dlq.>")
        except NotFoundError:
            return
        counts = stream.state.subjects or {}
        for subject in dlq_subjects:
            DLQ_MESSAGES.labels(subject).set(counts.get(subject, 0))


def backlog_worker(
    consumers: Sequence[ConsumerSpec], dlq_subjects: Sequence[str], every_seconds: float = DEFAULT_BACKLOG_SECONDS
) -> Callable[[Any], Awaitable[None]]:
    """A supervised worker (``runtime.add_worker("backlog", ...)``) keeping the gauges fresh."""
    for spec in consumers:  # the series exist at 0 from the start, before the first look
        for gauge in (CONSUMER_PENDING, CONSUMER_ACK_PENDING, CONSUMER_REDELIVERED):
            gauge.labels(spec.stream, spec.durable)
    for subject in dlq_subjects:
        DLQ_MESSAGES.labels(subject)

    async def collect(runtime: Any) -> None:
        if not runtime.broker.is_connected:
            return
        try:
            await read_backlog(runtime.broker.js, consumers, dlq_subjects)
        except _TRANSIENT as exc:
            log.debug("backlog not read this time", error=type(exc).__name__)
            return
        COLLECTED.labels(runtime.settings.service_name).set_to_current_time()

    return periodic(collect, every_seconds)
