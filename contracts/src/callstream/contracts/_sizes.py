"""How large a message may be so that everything downstream of it can still be published.

NATS refuses a message over the server's ``max_payload`` (1 MiB unless configured; callstream's
deployments set 24 MiB, see deploy/README.md). The largest thing callstream ever publishes for a
message of ``n`` bytes is not the message itself but its dead letter: :class:`DeadLetter` carries
the original bytes as base64 (``4 * ceil(n / 3)``) inside a small JSON envelope. Whoever accepts a
message into a stream (the gateway for a webhook or a pulled meeting) checks it against this
budget, so that the normalizer can always dead-letter it, and ``dlq redrive`` republish it.
"""

from __future__ import annotations

# The max_payload every callstream deployment gives its NATS servers: the dead letter of a RawCall
# holding a 16 MiB body (CALLSTREAM_GATEWAY_MAX_BODY's default) is ~21.4 MiB. deploy/tests check
# that the dev stack, compose and the Helm values all say this.
NATS_MAX_PAYLOAD = 24 * 1024 * 1024

# The envelope around the base64 data: consumer and subject names, the original headers
# (Nats-Msg-Id, traceparent), the error (at most 2,000 characters, each at most 6 bytes once JSON
# escapes it), counts and the time, and the DLQ publish's own headers. Generous on purpose.
DEAD_LETTER_ENVELOPE_BYTES = 16 * 1024


def dead_letter_size(message_bytes: int) -> int:
    """An upper bound of the published size of the dead letter of a ``message_bytes`` message."""
    return 4 * -(-message_bytes // 3) + DEAD_LETTER_ENVELOPE_BYTES


def largest_dead_letterable(max_payload: int) -> int:
    """The largest message whose dead letter still fits in ``max_payload`` (0 when none does)."""
    return max(0, (max_payload - DEAD_LETTER_ENVELOPE_BYTES) // 4 * 3)


def max_payload_needed(message_bytes: int) -> int:
    """The ``max_payload`` a server needs for messages up to ``message_bytes``, dead letters included."""
    return dead_letter_size(message_bytes)
