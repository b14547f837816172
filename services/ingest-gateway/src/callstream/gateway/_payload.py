"""How large a meeting the gateway may accept: never one the event broker cannot carry.

Design (issue #17, item 3): meetings travel inline in ``RawCall`` and every deployment raises NATS's
``max_payload`` (24 MiB: deploy/devstack, deploy/compose.yaml, deploy/k8s/nats), rather than a
claim check (the payload in JetStream's object store, the ``RawCall`` carrying a reference). Why:

- one durable write per meeting, acknowledged before the 202, with the stream's duplicate window
  as the only deduplication; a claim check makes it two writes (object, then reference) with
  orphans to collect when the second fails, and a second retention (the object bucket's) to keep
  equal to ``CALLS_RAW``'s 30 days or replays find references to nothing;
- every reader of ``calls.raw.*`` (the normalizer, ``replay``, the DLQ and ``dlq redrive``, chaos
  and bench tools) keeps reading bytes; none has to resolve references or handle a missing object;
- meetings over 1 MiB are rare (a three-hour workshop is ~4.5 MiB) and bounded by the body limit
  (16 MiB), well under NATS's hard 64 MiB. NATS's advice against large payloads is about latency
  of the other messages on the same connection and memory per in-flight message; at this rate of
  large meetings that cost is small, and it is paid only when one is in flight.

The budget is the *dead letter*, not the message: a ``DeadLetter`` carries the bytes as base64,
~4/3 of the message (``callstream.contracts.dead_letter_size``). 16 MiB of body needs ~21.4 MiB,
hence 24 MiB. Each process reads the server's limit from its INFO (``nc.max_payload``), so a server
left at a smaller value is never a 503 loop: bodies that cannot be carried are answered 413, one
error is logged when the connection is made, and ``callstream_gateway_body_limit_bytes`` shows the
limit in force.
"""

from __future__ import annotations

from prometheus_client import Gauge

from callstream.contracts import dead_letter_size, largest_dead_letterable, max_payload_needed
from callstream.runtime import Broker, get_logger

log = get_logger(__name__)

# What a RawCall adds around the provider's bytes (ids, names, time, traceparent). Only used to
# refuse early by Content-Length; the encoded RawCall itself is always checked exactly.
RAW_CALL_ENVELOPE_BYTES = 4096

BODY_LIMIT = Gauge(
    "callstream_gateway_body_limit_bytes",
    "Largest meeting accepted (webhook body or pulled meeting): CALLSTREAM_GATEWAY_MAX_BODY, or less "
    "when the broker's max_payload cannot carry it with its dead letter",
)
BROKER_MAX_PAYLOAD = Gauge("callstream_gateway_broker_max_payload_bytes", "max_payload announced by the NATS server")


class PayloadLimit:
    """The limit in force: ``max_body`` and the connected server's ``max_payload``, read on each
    call (a reconnect may reach a server configured otherwise)."""

    def __init__(self, broker: Broker, max_body: int) -> None:
        self._broker = broker
        self.max_body = max_body
        BODY_LIMIT.set(max_body)

    def _max_payload(self) -> int | None:
        return self._broker.nc.max_payload if self._broker.is_connected else None

    def body_limit(self) -> int:
        """The largest body worth reading: ``max_body``, or less when the broker cannot carry it."""
        max_payload = self._max_payload()
        if max_payload is None:
            return self.max_body
        return max(0, min(self.max_body, largest_dead_letterable(max_payload) - RAW_CALL_ENVELOPE_BYTES))

    def fits(self, encoded: int) -> bool:
        """Whether a ``RawCall`` of ``encoded`` bytes can be published, and dead-lettered later."""
        max_payload = self._max_payload()
        return max_payload is None or dead_letter_size(encoded) <= max_payload

    async def check(self, broker: Broker) -> None:
        """On connecting: publish the limit in force, and say once, clearly, when it is smaller
        than ``CALLSTREAM_GATEWAY_MAX_BODY``."""
        max_payload = broker.nc.max_payload
        BROKER_MAX_PAYLOAD.set(max_payload)
        limit = self.body_limit()
        BODY_LIMIT.set(limit)
        if limit < self.max_body:
            log.error(
                "nats max_payload is too small for CALLSTREAM_GATEWAY_MAX_BODY: larger meetings are refused "
                "with 413 (webhooks) or dead-lettered (pulls) until the server's max_payload is raised",
                max_payload=max_payload,
                max_body=self.max_body,
                body_limit=limit,
                max_payload_needed=max_payload_needed(self.max_body + RAW_CALL_ENVELOPE_BYTES),
            )
