"""Subject names, streams and durable consumers: the one place every service and ``./dev up`` read."""

from __future__ import annotations

from typing import Literal

import msgspec

from ._messages import Source

CALLS_RAW = "CALLS_RAW"
SYNC = "SYNC"
SYNC_EVENTS = "SYNC_EVENTS"
MESSAGES = "MESSAGES"
FEATURES = "FEATURES"
DLQ = "DLQ"
DATAPOINTS = "DATAPOINTS"
ERASURES = "ERASURES"

FEATURES_LINKED = "features.linked"
FEATURES_UNLINKED = "features.unlinked"
DATAPOINTS_RECORDED = "datapoints.recorded"
ERASURES_REQUESTED = "erasures.requested"

_DAY = 86_400.0


def raw_calls_subject(source: Source, integration_id: str) -> str:
    """``calls.raw.<source>.<integration_id>``: the integration's own token lets an erasure purge
    exactly its raw events from ``CALLS_RAW`` by subject filter (``calls.raw.fathom`` without the
    token is what gateways before it published; every reader takes ``calls.raw.>`` and so both)."""
    return f"calls.raw.{source}.{integration_id}"


def sync_requested_subject(provider: Source) -> str:
    return f"sync.requested.{provider}"


def sync_events_subject(provider: Source) -> str:
    return f"sync.events.{provider}"


def sync_stored_subject(provider: Source) -> str:
    """``SyncStored`` (the normalizer): inside ``sync.events.>``, so the scheduler's one consumer
    reads it in order with the rest, but a subject of its own, so the normalizer may publish this
    and never a run's progress or end."""
    return f"sync.events.stored.{provider}"


def messages_upserted_subject(source: Source) -> str:
    return f"messages.upserted.{source}"


def messages_deleted_subject(source: Source) -> str:
    return f"messages.deleted.{source}"


def calls_listed_subject(source: Source, integration_id: str) -> str:
    """Per integration, so that erasing one can purge its listings (they name its call ids)."""
    return f"calls.listed.{source}.{integration_id}"


def erasures_finished_subject(service: str) -> str:
    return f"erasures.finished.{service}"


def dlq_subject(consumer: str) -> str:
    return f"dlq.{consumer}"


class StreamSpec(msgspec.Struct, kw_only=True, frozen=True):
    """A JetStream stream, described without any client library so that contracts do no I/O."""

    name: str
    subjects: tuple[str, ...]
    description: str
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    storage: Literal["file", "memory"] = "file"
    max_age_seconds: float = 0.0
    duplicate_window_seconds: float = 120.0


class ConsumerSpec(msgspec.Struct, kw_only=True, frozen=True):
    """A durable pull consumer with explicit acknowledgement."""

    stream: str
    durable: str
    filter_subject: str
    description: str
    ack_wait_seconds: float = 60.0
    max_deliver: int = 10
    max_ack_pending: int = 10_000


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        name=CALLS_RAW,
        # calls.listed.>: what a reconciling run listed (CallsListed), never replayed as calls.
        subjects=("calls.raw.>", "calls.listed.>"),
        description="Provider objects byte for byte, replayable for re-derivation, and complete listings",
        max_age_seconds=30 * _DAY,
        # Svix resends after 5 s, 5 min, 30 min and 2 h with the same webhook-id; a two-hour
        # window keeps those out of the stream (the normalizer is idempotent for the rest).
        duplicate_window_seconds=2 * 3600.0,
    ),
    StreamSpec(
        name=SYNC,
        subjects=("sync.requested.>",),
        description="Pull runs waiting for a gateway worker",
        retention="workqueue",
        duplicate_window_seconds=3600.0,
    ),
    StreamSpec(
        name=SYNC_EVENTS,
        subjects=("sync.events.>",),
        description="Progress and completion of pull runs",
        max_age_seconds=7 * _DAY,
    ),
    StreamSpec(
        name=MESSAGES,
        subjects=("messages.upserted.>", "messages.deleted.>"),
        description="Messages stored, changed or deleted, published from the normalizer's outbox",
        max_age_seconds=30 * _DAY,
        duplicate_window_seconds=2 * 3600.0,
    ),
    StreamSpec(
        name=FEATURES,
        subjects=("features.>",),  # FEATURES_LINKED and FEATURES_UNLINKED
        description="Features linked to and unlinked from messages (the linker's HTTP and other internal services)",
        max_age_seconds=30 * _DAY,
    ),
    StreamSpec(
        name=DATAPOINTS,
        subjects=(DATAPOINTS_RECORDED,),
        description="Data points extracted from messages, with their evidence (the linker publishes them)",
        max_age_seconds=30 * _DAY,
    ),
    StreamSpec(
        name=ERASURES,
        subjects=("erasures.>",),  # ERASURES_REQUESTED and erasures.finished.<service>
        description="Erasures asked for and each service's part done (ids and counts, never what was erased)",
        max_age_seconds=30 * _DAY,
    ),
    StreamSpec(
        name=DLQ,
        subjects=("dlq.>",),
        description="What a consumer could never process, with the error",
        max_age_seconds=90 * _DAY,
    ),
)

NORMALIZER_CONSUMER = ConsumerSpec(
    stream=CALLS_RAW,
    durable="normalizer",
    filter_subject="calls.raw.>",
    description="normalizer: raw calls to messages",
    ack_wait_seconds=60.0,
    max_deliver=10,
)
NORMALIZER_LISTINGS_CONSUMER = ConsumerSpec(
    stream=CALLS_RAW,
    durable="normalizer-listings",
    filter_subject="calls.listed.>",
    description="normalizer: complete provider listings to tombstones of the calls they no longer list",
)
NORMALIZER_FEATURES_CONSUMER = ConsumerSpec(
    stream=FEATURES,
    durable="normalizer-features",
    # Links and unlinks through one consumer, in stream order: a link, its unlink and a link again
    # end linked.
    filter_subject="features.>",
    description="normalizer: features linked to and unlinked from messages",
)
NORMALIZER_DATAPOINTS_CONSUMER = ConsumerSpec(
    stream=DATAPOINTS,
    durable="normalizer-datapoints",
    filter_subject=DATAPOINTS_RECORDED,
    description="normalizer: data points into data_points",
)
GATEWAY_PULL_CONSUMER = ConsumerSpec(
    stream=SYNC,
    durable="gateway-pull",
    filter_subject="sync.requested.>",
    description="ingest-gateway: pull workers (a run keeps its lease with in-progress acks)",
    # Three of the workers' 20 s in-progress acks fit in it; a killed replica's run moves on within a minute.
    ack_wait_seconds=60.0,
    # As good as unlimited: a backfill gives its slot up every few seconds while others wait (a
    # nak each), so a delivery is not a failure; the worker counts a run's failures and gives up
    # with its SyncFinished error (CALLSTREAM_GATEWAY_PULL_MAX_FAILURES) instead of JetStream
    # dropping it silently. Not -1: a consumer made with 20 and updated in place to -1 keeps
    # stopping at 20 (measured on the embedded nats-server); a positive limit is applied.
    max_deliver=1_000_000,
    max_ack_pending=64,
)
SCHEDULER_CONSUMER = ConsumerSpec(
    stream=SYNC_EVENTS,
    durable="scheduler",
    filter_subject="sync.events.>",
    description="scheduler: run progress and completion",
)
# An erasure's part may take minutes (50,000 messages): the handlers keep their lease with
# in-progress acks, and a crash resumes the part from where it stopped (each part is idempotent).
NORMALIZER_ERASURES_CONSUMER = ConsumerSpec(
    stream=ERASURES,
    durable="normalizer-erasures",
    filter_subject=ERASURES_REQUESTED,
    description="normalizer: erase messages, contacts, customers, links, data points and stream events",
    max_deliver=1_000,
)
SCHEDULER_ERASURES_CONSUMER = ConsumerSpec(
    stream=ERASURES,
    durable="scheduler-erasures",
    filter_subject=ERASURES_REQUESTED,
    description="scheduler: erase sync state, runs and jobs",
    max_deliver=1_000,
)
GATEWAY_ERASURES_CONSUMER = ConsumerSpec(
    stream=ERASURES,
    durable="gateway-erasures",
    filter_subject="erasures.finished.>",
    description="ingest-gateway: each service's part of an erasure into the job's state",
    max_deliver=1_000,
)

CONSUMERS: tuple[ConsumerSpec, ...] = (
    NORMALIZER_CONSUMER,
    NORMALIZER_LISTINGS_CONSUMER,
    NORMALIZER_FEATURES_CONSUMER,
    NORMALIZER_DATAPOINTS_CONSUMER,
    GATEWAY_PULL_CONSUMER,
    SCHEDULER_CONSUMER,
    NORMALIZER_ERASURES_CONSUMER,
    SCHEDULER_ERASURES_CONSUMER,
    GATEWAY_ERASURES_CONSUMER,
)
