"""What the linker accepts over HTTP (feature links, data points) goes out as JetStream events, its
only writes: a request is answered 202 once JetStream has acknowledged every event of it, and 503
with ``Retry-After`` when the broker cannot confirm (the client retries; each event's
``Nats-Msg-Id`` makes a resent one a duplicate, not a second event)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import nats.errors

from callstream.runtime import ApiError, Broker, get_logger, new_traceparent, tracing

__all__ = ["PUBLISH_TIMEOUT_SECONDS", "PUBLISH_WINDOW", "RETRY_AFTER", "EventPublisher"]

log = get_logger(__name__)

PUBLISH_TIMEOUT_SECONDS = 5.0
PUBLISH_WINDOW = 100  # publishes awaiting their ack at once
RETRY_AFTER = {"Retry-After": "2"}
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, "broker_unavailable", detail, RETRY_AFTER)


class EventPublisher:
    """Publishes a request's events and waits for every JetStream ack."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(self, subject: str, events: Sequence[tuple[bytes, str]], traceparent: str | None) -> int:
        """``events``: ``(data, Nats-Msg-Id)`` each. Returns how many JetStream already had (a
        retried request); raises the 503 when any is unconfirmed (some may be stored: a resend is
        deduplicated). ``traceparent``: the caller's, continued when valid, else a new trace."""
        if not self._broker.is_connected:
            raise _unavailable("the event broker is unreachable; retry later")
        js = self._broker.js
        trace: dict[str, str] = {}
        if tracing.on:
            tracing.inject(trace)
        else:
            trace["traceparent"] = traceparent if traceparent and _TRACEPARENT.match(traceparent) else new_traceparent()

        async def one(data: bytes, event_id: str) -> bool:
            headers = {"Nats-Msg-Id": event_id, **trace}
            ack = await js.publish(subject, data, timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers)
            return bool(ack.duplicate)

        duplicates = 0
        try:
            for start in range(0, len(events), PUBLISH_WINDOW):
                acks = await asyncio.gather(*(one(*e) for e in events[start : start + PUBLISH_WINDOW]))
                duplicates += sum(acks)
        except (nats.errors.Error, ConnectionError, TimeoutError) as exc:
            log.warning("publish failed", subject=subject, error=type(exc).__name__)
            raise _unavailable("the event broker did not confirm in time; retry later") from None
        return duplicates
