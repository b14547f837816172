"""Standard Webhooks (Svix) signature verification over the raw request bytes.

Written here rather than calling ``standardwebhooks.Webhook.verify`` because that library decodes
the body to ``str`` (a non-UTF-8 body raises instead of failing verification), raises on a
malformed signature entry instead of skipping it, knows only the ``webhook-*`` header names, and
has a fixed ±5 min tolerance. It stays the reference in the property test.

Signed content is ``f"{id}.{timestamp}.".encode() + body``; the key is the base64 after ``whsec_``;
``webhook-signature`` holds space-separated ``v1,<base64>`` entries, one of which must match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_TOLERANCE_SECONDS = 300
_MAX_ID_LENGTH = 256


class SignatureRejected(Exception):
    """Why a delivery was refused; ``code`` goes to the client as the error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_id: str
    timestamp: int


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``webhook-<name>``, else its Svix copy ``svix-<name>``; ``headers`` has lower-case keys."""
    return headers.get("webhook-" + name) or headers.get("svix-" + name)


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry (for tests and the benchmark's load generator)."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> Delivery:
    """Accept the delivery or raise :class:`SignatureRejected`.

    ``headers`` must have lower-case keys (ASGI guarantees it; :func:`lower_keys` otherwise).
    ``keys`` are the integration's HMAC keys; none means no secret is configured: fail closed.
    """
    if not keys:
        raise SignatureRejected(
            "no_webhook_secret", "this integration has no webhook secret; every delivery is refused"
        )
    webhook_id = _header(headers, "id")
    raw_timestamp = _header(headers, "timestamp")
    signatures = _header(headers, "signature")
    if not webhook_id or not raw_timestamp or not signatures:
        raise SignatureRejected(
            "missing_signature_headers", "webhook-id, webhook-timestamp and webhook-signature are required"
        )
    if len(webhook_id) > _MAX_ID_LENGTH:
        raise SignatureRejected("invalid_webhook_id", f"webhook-id is longer than {_MAX_ID_LENGTH} characters")
    stripped = raw_timestamp.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 12:
        raise SignatureRejected("invalid_timestamp", "webhook-timestamp must be Unix seconds")
    timestamp = int(stripped)
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureRejected(
            "stale_timestamp", f"webhook-timestamp is more than {tolerance_seconds} s away from the server's clock"
        )
    signed = f"{webhook_id}.{stripped}.".encode() + body
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue  # other versions and malformed entries never match
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Check every key with compare_digest, so timing says nothing about which byte differed.
        if any(hmac.compare_digest(given, digest) for digest in expected):
            return Delivery(webhook_id, timestamp)
    raise SignatureRejected("invalid_signature", "no v1 signature matches this body")
