"""Declare the streams and durable consumers of ``callstream.contracts`` on a JetStream server."""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError, ServiceUnavailableError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from callstream.contracts import CONSUMERS, STREAMS, ConsumerSpec, StreamSpec

from ._logging import get_logger

log = get_logger(__name__)

_RETENTION = {
    "limits": RetentionPolicy.LIMITS,
    "workqueue": RetentionPolicy.WORK_QUEUE,
    "interest": RetentionPolicy.INTEREST,
}


def stream_config(spec: StreamSpec, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        retention=_RETENTION[spec.retention],
        storage=StorageType.FILE if spec.storage == "file" else StorageType.MEMORY,
        max_age=spec.max_age_seconds,
        duplicate_window=spec.duplicate_window_seconds,
        num_replicas=replicas,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description,
        filter_subject=spec.filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_seconds,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    config = stream_config(spec, replicas)
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    await js.add_consumer(spec.stream, consumer_config(spec))


async def ensure_all(js: JetStreamContext, replicas: int = 1, *, patience_seconds: float = 60.0) -> None:
    """Every stream and durable consumer of the contracts: what ``setup`` and ``./dev up`` run.

    A JetStream cluster that is electing leaders (a restart, a server away) answers its API late
    or with 503 for a while; declarations are idempotent, so they are repeated until
    ``patience_seconds`` have passed. Any other error is raised at once."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(patience_seconds),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        retry=retry_if_exception_type((nats.errors.TimeoutError, ServiceUnavailableError)),
        before_sleep=lambda s: log.warning("jetstream not answering yet, declaring again", attempt=s.attempt_number),
        reraise=True,
    ):
        with attempt:
            for stream in STREAMS:
                await ensure_stream(js, stream, replicas)
            for consumer in CONSUMERS:
                await ensure_consumer(js, consumer)
