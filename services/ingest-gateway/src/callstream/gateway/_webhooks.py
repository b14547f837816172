"""``POST /v1/webhooks/fathom/{integration_id}``: verify, publish one ``RawCall``, answer after the ack.

No database on this path: the integration and its secret come from :class:`WebhookSecretCache`.
Duplicates are JetStream's job: ``Nats-Msg-Id`` is derived from the integration and ``webhook-id``,
so a resend (even two copies at the same moment) is stored once and answered 202 with
``duplicate: true``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from random import getrandbits
from typing import Any

import msgspec
import nats.errors
from litestar import Request, Response, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from nats.js import JetStreamContext

from callstream.contracts import RawCall, raw_calls_subject, webhook_event_id
from callstream.runtime import ApiError, Broker, get_logger

from ._secret_cache import WebhookSecretCache
from ._settings import Settings
from ._signature import SignatureRejected, verify

log = get_logger(__name__)

WEBHOOK_PATH = "/v1/webhooks/fathom/{integration_id:str}"
SUBJECT = raw_calls_subject("fathom")


class _MeetingProbe(msgspec.Struct):
    """Just enough of a Fathom meeting to know it is one; the rest is carried byte for byte."""

    recording_id: int | str


_probe = msgspec.json.Decoder(_MeetingProbe).decode
_encode = msgspec.json.Encoder().encode


def webhook_path(integration_id: str) -> str:
    return f"/v1/webhooks/fathom/{integration_id}"


class _Accepted(msgspec.Struct):
    event_id: str
    duplicate: bool


def _external_id(body: bytes) -> str:
    try:
        meeting = _probe(body)
    except msgspec.ValidationError:
        raise ApiError(400, "not_a_meeting", "the body is not a Fathom meeting (no integer recording_id)") from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    value = meeting.recording_id
    if isinstance(value, str) and not value.strip():
        raise ApiError(400, "not_a_meeting", "recording_id is empty")
    return str(value)


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _traceparent(given: str | None) -> str:
    """The caller's W3C trace context when it is well formed, else a new trace."""
    if given and _TRACEPARENT.match(given):
        return given
    # Trace ids need to be unique, not secret: the non-cryptographic generator, as OpenTelemetry's
    # RandomIdGenerator does, costs no system call per webhook.
    return f"00-{getrandbits(128) or 1:032x}-{getrandbits(64) or 1:016x}-01"  # all-zero ids are invalid


# The only headers this path reads (ASGI names are lower case); decoding just these, not all.
_READ_HEADERS = frozenset(
    name.encode()
    for name in (
        "content-length",
        "traceparent",
        *(f"{prefix}-{part}" for prefix in ("webhook", "svix") for part in ("id", "timestamp", "signature")),
    )
)


def fathom_webhook_handler(settings: Settings, cache: WebhookSecretCache, broker: Broker) -> HTTPRouteHandler:
    max_body = settings.max_body
    tolerance = settings.webhook_tolerance_seconds
    timeout = settings.publish_timeout_seconds
    unavailable = {"Retry-After": str(settings.retry_after_seconds)}
    contexts: dict[str, JetStreamContext] = {}

    @post(
        WEBHOOK_PATH,
        status_code=202,
        request_max_body_size=max_body,
        summary="Receive a Fathom webhook (Standard Webhooks signature)",
    )
    async def fathom_webhook(request: Request[Any, Any, Any], integration_id: FromPath[str]) -> Response[_Accepted]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"] if k in _READ_HEADERS}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise ApiError(413, "body_too_large", f"the body is larger than {max_body} bytes")
        if not cache.ready:
            raise ApiError(503, "not_ready", "integrations are not loaded yet; retry", unavailable)
        target = cache.get(integration_id)
        if target is None or target.status == "disabled":
            raise ApiError(404, "unknown_integration", "no active Fathom integration has this id")
        try:
            body = await request.body()
        except RequestEntityTooLarge:
            raise ApiError(413, "body_too_large", f"the body is larger than {max_body} bytes") from None
        try:
            delivery = verify(target.keys, headers, body, now=time.time(), tolerance_seconds=tolerance)
        except SignatureRejected as exc:
            log.info("webhook rejected", integration_id=integration_id, reason=exc.code)
            raise ApiError(401, exc.code, exc.detail) from None
        external_id = _external_id(body)
        event_id = webhook_event_id(integration_id, delivery.webhook_id)
        traceparent = _traceparent(headers.get("traceparent"))
        raw = RawCall(
            event_id=event_id,
            source="fathom",
            workspace_id=target.workspace_id,
            integration_id=integration_id,
            external_id=external_id,
            origin="webhook",
            received_at=datetime.now(UTC),
            traceparent=traceparent,
            payload=msgspec.Raw(body),
        )
        nats_headers = {"Nats-Msg-Id": event_id, "traceparent": traceparent}
        if not broker.is_connected:
            raise ApiError(503, "broker_unavailable", "the event broker is unreachable; retry later", unavailable)
        js = contexts.get("js")
        if js is None:  # one JetStream context for the life of the connection (nats-py reconnects in place)
            js = contexts["js"] = broker.js
        try:
            ack = await js.publish(SUBJECT, _encode(raw), timeout=timeout, headers=nats_headers)
        except (nats.errors.Error, ConnectionError, TimeoutError) as exc:
            log.warning("webhook publish failed", integration_id=integration_id, error=type(exc).__name__)
            raise ApiError(
                503, "broker_unavailable", "the event broker did not confirm in time; retry later", unavailable
            ) from None
        duplicate = bool(ack.duplicate)
        log.debug("webhook accepted", integration_id=integration_id, event_id=event_id, duplicate=duplicate)
        return Response(_Accepted(event_id, duplicate), status_code=202)

    return fathom_webhook
