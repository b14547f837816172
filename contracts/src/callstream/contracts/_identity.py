"""Deterministic ``Nats-Msg-Id`` values: the same content identity always gives the same id, so
JetStream's duplicate window turns a resend into a no-op."""

from __future__ import annotations

import hashlib


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def webhook_event_id(integration_id: str, webhook_id: str) -> str:
    """One Fathom delivery, however often it is resent."""
    return "wh-" + _digest("webhook", integration_id, webhook_id)


def pull_event_id(integration_id: str, external_id: str, payload: bytes) -> str:
    """One provider object in one state: pulling it again unchanged is a duplicate."""
    return "pl-" + _digest("pull", integration_id, external_id, payload)


def feature_link_event_id(
    change: str, workspace_id: str, feature_id: str, source: str, external_id: str, basis: str
) -> str:
    """One link or unlink request (``change``: ``linked``/``unlinked``) of one message to one
    feature, made against one state of that link (``basis``: what the requester saw stored, or the
    client's ``Idempotency-Key``): a retry of the request is a duplicate, while the same request
    after the state changed (a link, its unlink, a link again) is a new event."""
    return "fl-" + _digest("feature", change, workspace_id, feature_id, source, external_id, basis)


def hash_api_token(token: str) -> str:
    """How an API token is stored and looked up (the gateway issues, the linker checks)."""
    return hashlib.sha256(token.encode()).hexdigest()
