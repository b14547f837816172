"""Publishing a run's calls and its progress to JetStream, each acknowledged before we go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec
from nats.js import JetStreamContext

from callstream.contracts import (
    CALLS_RAW,
    DLQ,
    GATEWAY_PULL_CONSUMER,
    SYNC_EVENTS,
    CallsListed,
    DeadLetter,
    RawCall,
    Source,
    SyncFinished,
    SyncProgress,
    calls_listed_subject,
    dead_letter_size,
    dlq_subject,
    raw_calls_subject,
    sync_events_subject,
)
from callstream.runtime import SpanKind, get_logger, tracing
from callstream.runtime._tracing import NO_SPAN

from ._errors import RunDeferred

log = get_logger(__name__)

PUBLISH_TIMEOUT = 10.0
# Where a pulled meeting the broker cannot carry is recorded (see ``Publisher.calls``).
TOO_LARGE_SUBJECT = dlq_subject(GATEWAY_PULL_CONSUMER.durable)


def _max_payload(js: JetStreamContext) -> int | None:
    """The connected server's ``max_payload`` (its INFO); nats-py gives the context no public
    accessor to its connection."""
    nc = getattr(js, "_nc", None)
    return nc.max_payload if nc is not None and nc.is_connected else None


class PublishedCalls(NamedTuple):
    published: int
    already_received: int  # of those, JetStream held them already (an unchanged call read again)


@dataclass
class Publisher:
    js: JetStreamContext
    redeliver_delay: float

    async def _publish(
        self, subject: str, data: bytes, msg_id: str, stream: str, traceparent: str | None, call: RawCall | None = None
    ) -> bool:
        """Published; True when JetStream had it already (its ``Nats-Msg-Id`` within the window)."""
        headers = {"Nats-Msg-Id": msg_id}
        if traceparent:
            headers["traceparent"] = traceparent
        # Traced: a producer span per message, a child of the run's span; its context is the header.
        # Named by the subject without its integration token (span names stay few; the attributes
        # carry the integration and the whole subject).
        name = subject.removesuffix(f".{call.integration_id}") if call is not None else subject
        with (
            tracing.span(f"{name} publish", kind=SpanKind.PRODUCER, attributes=_ids(subject, msg_id, call))
            if tracing.on
            else NO_SPAN
        ):
            if tracing.on:
                tracing.inject(headers)
            ack = await self.js.publish(subject, data, timeout=PUBLISH_TIMEOUT, stream=stream, headers=headers)
        return bool(ack.duplicate)

    async def calls(self, source: Source, calls: Sequence[RawCall]) -> PublishedCalls:
        """Every call of a page, in parallel; returns, once JetStream has stored them all, how many
        went to ``CALLS_RAW`` (what the run reports as published). The runs hand over only calls
        the normalizer can map (``_mappable``).

        A meeting too large for the broker (with its dead letter: ``dead_letter_size``) would fail
        on every delivery of the run and hold its watermark for good: it is recorded in the DLQ
        instead (without its bytes, which cannot be carried either) with a loud error, and the
        page goes on. With max_payload as deployed (24 MiB) every meeting up to 18 MiB fits."""
        max_payload = _max_payload(self.js)
        encoded = [(c, msgspec.json.encode(c)) for c in calls]
        fits = [max_payload is None or dead_letter_size(len(data)) <= max_payload for _, data in encoded]
        try:
            duplicates = await asyncio.gather(
                *(
                    self._publish(
                        raw_calls_subject(source, c.integration_id), data, c.event_id, CALLS_RAW, c.traceparent, c
                    )
                    if fit
                    else self._too_large(raw_calls_subject(source, c.integration_id), c, len(data), max_payload or 0)
                    for (c, data), fit in zip(encoded, fits, strict=True)
                )
            )
        except Exception as exc:  # any broker failure: the page is not done, come back later
            raise RunDeferred(f"could not publish to {CALLS_RAW}: {type(exc).__name__}", self.redeliver_delay) from None
        return PublishedCalls(sum(fits), sum(1 for duplicate in duplicates if duplicate is True))

    async def _too_large(self, subject: str, call: RawCall, size: int, max_payload: int) -> None:
        error = (
            f"{call.source} meeting {call.external_id} is {size} bytes as a RawCall: more than the broker can carry "
            f"with its dead letter (max_payload {max_payload}); raise max_payload and pull its range again"
        )
        log.error(
            "pulled meeting too large for the broker, dead-lettered without its content",
            integration_id=call.integration_id,
            external_id=call.external_id,
            size=size,
            max_payload=max_payload,
        )
        letter = DeadLetter(
            consumer=GATEWAY_PULL_CONSUMER.durable,
            subject=subject,
            stream_sequence=0,  # never in a stream
            headers={
                "Nats-Msg-Id": call.event_id,
                "integration-id": call.integration_id,
                "workspace-id": call.workspace_id,
                "external-id": call.external_id,
            },
            data=b"",
            error=error,
            delivery_count=0,
            failed_at=utcnow(),
        )
        await self._publish(
            TOO_LARGE_SUBJECT, msgspec.json.encode(letter), f"dlq-too-large-{call.event_id}", DLQ, call.traceparent
        )

    async def listing(self, listing: CallsListed, traceparent: str | None) -> None:
        """A reconciling run's complete listing, after its calls (same stream, later sequence)."""
        try:
            await self._publish(
                calls_listed_subject(listing.source, listing.integration_id),
                msgspec.json.encode(listing),
                f"listed-{listing.run_id}",
                CALLS_RAW,
                traceparent,
            )
        except Exception as exc:
            raise RunDeferred(f"could not publish to {CALLS_RAW}: {type(exc).__name__}", self.redeliver_delay) from None

    async def event(self, provider: Source, event: SyncProgress | SyncFinished, traceparent: str | None) -> None:
        if isinstance(event, SyncFinished):
            kind = "finished"
        elif event.resume_after is not None:  # one per release of the run, never deduplicated with a page
            kind = f"waiting-{event.page}-{event.at.timestamp():.6f}"
        else:
            kind = f"progress-{event.page}"
        try:
            await self._publish(
                sync_events_subject(provider),
                msgspec.json.encode(event),
                f"sync-{event.run_id}-{kind}",
                SYNC_EVENTS,
                traceparent,
            )
        except Exception as exc:
            raise RunDeferred(
                f"could not publish to {SYNC_EVENTS}: {type(exc).__name__}", self.redeliver_delay
            ) from None


def _ids(subject: str, msg_id: str, call: RawCall | None) -> dict[str, str]:
    ids = {"messaging.system": "nats", "messaging.destination.name": subject, "messaging.message.id": msg_id}
    if call is not None:
        ids["callstream.workspace_id"] = call.workspace_id
        ids["callstream.integration_id"] = call.integration_id
        ids["callstream.message.external_id"] = call.external_id
    return ids


def utcnow() -> datetime:
    return datetime.now(UTC)
