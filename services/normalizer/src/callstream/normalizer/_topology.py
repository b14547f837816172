"""The streams and durable consumers the normalizer uses, declared at start (idempotent), so a
fresh deployment works without a separate ``setup`` step."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from callstream.contracts import (
    CALLS_RAW,
    DATAPOINTS,
    DLQ,
    ERASURES,
    FEATURES,
    MESSAGES,
    NORMALIZER_CONSUMER,
    NORMALIZER_DATAPOINTS_CONSUMER,
    NORMALIZER_ERASURES_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    NORMALIZER_LISTINGS_CONSUMER,
    STREAMS,
)
from callstream.runtime import ensure_consumer, ensure_stream

# ERASURES is the gateway's to publish to; declared here too, so an erasure asked for in a
# deployment whose `setup` has not run again since is not left waiting unseen.
_OWN_STREAMS = (CALLS_RAW, MESSAGES, FEATURES, DATAPOINTS, DLQ, ERASURES)
_lock = asyncio.Lock()  # the workers of one process declare one at a time


async def ensure_topology(js: JetStreamContext, replicas: int = 1) -> None:
    async with _lock:
        for spec in STREAMS:
            if spec.name in _OWN_STREAMS:
                await ensure_stream(js, spec, replicas)
        for consumer in (
            NORMALIZER_CONSUMER,
            NORMALIZER_LISTINGS_CONSUMER,
            NORMALIZER_FEATURES_CONSUMER,
            NORMALIZER_DATAPOINTS_CONSUMER,
            NORMALIZER_ERASURES_CONSUMER,
        ):
            try:
                await js.consumer_info(consumer.stream, consumer.durable)
            except NotFoundError:
                await ensure_consumer(js, consumer)
            # An existing consumer is left as it is: an operator may have tuned it.
