"""``POST /v1/webhooks/fathom/{integration_id}``: verify, publish one ``RawCall``, answer after the ack.

No database on this path: the integration and its secret come from :class:`WebhookSecretCache`.
Duplicates are JetStream's job: ``Nats-Msg-Id`` is derived from the integration and ``webhook-id``,
so a resend (even two copies at the same moment) is stored once and answered 202 with
``duplicate: true``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
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
from opentelemetry.trace import Span

from callstream.contracts import RawCall, raw_calls_subject, webhook_event_id
from callstream.contracts.providers import PayloadRejected, fathom_meeting_id
from callstream.runtime import ApiError, Broker, SpanKind, get_logger, tracing
from callstream.runtime._tracing import NO_SPAN

from ._last_webhook import last_accepted
from ._payload import PayloadLimit
from ._secret_cache import WebhookSecretCache, WebhookTarget
from ._settings import Settings
from ._signature import SignatureRejected, verify

log = get_logger(__name__)

WEBHOOK_PATH = "/v1/webhooks/fathom/{integration_id:str}"
ROUTE = WEBHOOK_PATH.replace(":str", "")  # as OpenTelemetry's http.route


_encode = msgspec.json.Encoder().encode
# Sent with an answer the same bytes will always get (a body that is not a meeting, or too large):
# Svix, which delivers Fathom's webhooks, stops retrying the message instead of resending it for
# ~27 hours (fathom.md §4.4). Not with 401/404: a secret or an integration may be fixed meanwhile.
FINAL = {"webhook-delivery": "abort-message"}


def webhook_path(integration_id: str) -> str:
    return f"/v1/webhooks/fathom/{integration_id}"


class Accepted(msgspec.Struct):
    event_id: str
    duplicate: bool


def _external_id(body: bytes) -> str:
    """The meeting's identity, by the rule the normalizer maps with (``callstream.contracts``,
    one implementation): 400 for what it could never map, so nothing is accepted with 202 only to
    land in the DLQ. JSON nested deeper than the limit is refused before any decode; a body with
    only documented fields costs one decode bounded by the model's own depth (``fathom_meeting_id``)."""
    try:
        return str(fathom_meeting_id(body))
    except PayloadRejected as exc:
        raise ApiError(400, exc.code, exc.detail, FINAL if _never_a_meeting(exc, body) else None) from None


class _Identity(msgspec.Struct):
    recording_id: int


_identity = msgspec.json.Decoder(_Identity).decode


def _never_a_meeting(exc: PayloadRejected, body: bytes) -> bool:
    """Whether Svix should stop resending: not JSON, nested too deep, or no integer
    ``recording_id``. A meeting with an identity whose other fields do not fit the model may fit
    it after Fathom's change is followed here: kept in Svix's retries (~27 h), not thrown away."""
    if exc.code != "not_a_meeting":
        return True
    try:
        _identity(body)  # the depth was checked already: this decode cannot recurse too far
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    return False


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _traceparent(given: str | None) -> str:
    """The caller's W3C trace context when it is well formed, else a new trace."""
    if given and _TRACEPARENT.match(given):
        return given
    # Trace ids need to be unique, not secret: the non-cryptographic generator, as OpenTelemetry's
    # RandomIdGenerator does, costs no system call per webhook.
    return f"00-{getrandbits(128) or 1:032x}-{getrandbits(64) or 1:016x}-01"  # all-zero ids are invalid


# The only headers this path reads (ASGI names are lower case).
_READ_HEADERS = frozenset(
    name.encode()
    for name in (
        "content-length",
        "traceparent",
        "tracestate",
        *(f"{prefix}-{part}" for prefix in ("webhook", "svix") for part in ("id", "timestamp", "signature")),
    )
)


def read_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers this path reads, from the ASGI list (decoding just these, not all)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k in _READ_HEADERS}


class FathomWebhooks:
    """What the webhook does, apart from the framework: the litestar route and the hot path in
    front of it (``_hot.py``) run these same steps and raise the same :class:`ApiError`."""

    def __init__(self, settings: Settings, cache: WebhookSecretCache, broker: Broker) -> None:
        self.max_body = settings.max_body
        self._tolerance = settings.webhook_tolerance_seconds
        self._timeout = settings.publish_timeout_seconds
        self._unavailable = {"Retry-After": str(settings.retry_after_seconds)}
        self._cache = cache
        self._broker = broker
        self._js: JetStreamContext | None = None
        # Never accept what the broker cannot carry (see _payload.py): 413, not a 503 loop.
        self.payload = PayloadLimit(broker, settings.max_body)
        broker.on_connect(self.payload.check)

    def body_too_large(self) -> ApiError:
        limit = self.payload.body_limit()
        # Final only over CALLSTREAM_GATEWAY_MAX_BODY: under it, the broker's max_payload is what is
        # too small, and once an operator raises it the sender's next try gets through.
        final = FINAL if limit >= self.payload.max_body else None
        return ApiError(413, "body_too_large", f"the body is larger than {limit} bytes", final)

    def admit(self, integration_id: str, headers: dict[str, str]) -> WebhookTarget:
        """The checks that need no body: its announced size, the cache, the integration."""
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.payload.body_limit():
            raise self.body_too_large()
        if not self._cache.ready:
            raise ApiError(503, "not_ready", "integrations are not loaded yet; retry", self._unavailable)
        target = self._cache.get(integration_id)
        if target is None or target.status in ("disabled", "erased"):
            raise ApiError(404, "unknown_integration", "no active Fathom integration has this id")
        return target

    def raw_call(self, target: WebhookTarget, integration_id: str, headers: dict[str, str], body: bytes) -> RawCall:
        """The signed body as the raw event to publish; 401 for a bad signature, 400 for a body
        that is not a meeting. The event names the integration by its canonical id, whichever
        spelling of it the sender's URL used, so a resend under another spelling is a duplicate."""
        integration_id = target.integration_id
        try:
            delivery = verify(target.keys, headers, body, now=time.time(), tolerance_seconds=self._tolerance)
        except SignatureRejected as exc:
            log.info("webhook rejected", integration_id=integration_id, reason=exc.code)
            raise ApiError(401, exc.code, exc.detail) from None
        raw = RawCall(
            event_id=webhook_event_id(integration_id, delivery.webhook_id),
            source="fathom",
            workspace_id=target.workspace_id,
            integration_id=integration_id,
            external_id=_external_id(body),
            origin="webhook",
            received_at=datetime.now(UTC),
            # Traced: the webhook's span (which continues the sender's trace, if it sent one).
            traceparent=tracing.current_traceparent() if tracing.on else _traceparent(headers.get("traceparent")),
            payload=msgspec.Raw(body),
        )
        if tracing.on:
            tracing.annotate(_ids(raw))
            tracing.event("verified")
        return raw

    async def publish(self, raw: RawCall) -> Accepted:
        """Publish and wait for JetStream's ack (the durable write); 503 when the broker cannot
        confirm."""
        if not self._broker.is_connected:
            raise ApiError(503, "broker_unavailable", "the event broker is unreachable; retry later", self._unavailable)
        if self._js is None:  # one JetStream context for the life of the connection (nats-py reconnects in place)
            self._js = self._broker.js
        headers = {"Nats-Msg-Id": raw.event_id, "traceparent": raw.traceparent or ""}
        data = _encode(raw)
        if not self.payload.fits(len(data)):
            raise self.body_too_large()
        if tracing.on:  # the webhook's span (its traceparent is the RawCall's already), with its state
            tracing.inject(headers)
        try:
            ack = await self._js.publish(
                raw_calls_subject("fathom", raw.integration_id), data, timeout=self._timeout, headers=headers
            )
        except nats.errors.MaxPayloadError:  # a server with a smaller limit since the check above
            raise self.body_too_large() from None
        except (nats.errors.Error, ConnectionError, TimeoutError) as exc:
            log.warning("webhook publish failed", integration_id=raw.integration_id, error=type(exc).__name__)
            raise ApiError(
                503, "broker_unavailable", "the event broker did not confirm in time; retry later", self._unavailable
            ) from None
        duplicate = bool(ack.duplicate)
        last_accepted[raw.integration_id] = time.time()
        if tracing.on:
            tracing.event("published", {"callstream.duplicate": duplicate})
        log.debug("webhook accepted", integration_id=raw.integration_id, event_id=raw.event_id, duplicate=duplicate)
        return Accepted(raw.event_id, duplicate)


def _ids(raw: RawCall) -> dict[str, str]:
    """What a span of this webhook says about it: ids only, never the body or the signature."""
    return {
        "callstream.workspace_id": raw.workspace_id,
        "callstream.integration_id": raw.integration_id,
        "callstream.event_id": raw.event_id,
        "callstream.message.external_id": raw.external_id,
        "messaging.system": "nats",
        "messaging.destination.name": raw_calls_subject("fathom", raw.integration_id),
    }


def webhook_span(integration_id: str, headers: dict[str, str]) -> AbstractContextManager[Span]:
    """The one span of a webhook (its steps are events on it: ``verified``, ``published``), which
    continues the sender's trace when it sent a ``traceparent``. One span, not one per step: each
    span costs the gateway about as much CPU as the rest of the webhook (``bench/gateway_intake``)."""
    return tracing.span(
        "POST " + ROUTE,
        kind=SpanKind.SERVER,
        parent=tracing.extract(headers),
        attributes={
            "http.request.method": "POST",
            "http.route": ROUTE,
            "callstream.integration_id": integration_id,
        },
    )


def fathom_webhook_handler(webhooks: FathomWebhooks) -> HTTPRouteHandler:
    @post(
        WEBHOOK_PATH,
        status_code=202,
        request_max_body_size=webhooks.max_body,
        summary="Receive a Fathom webhook (Standard Webhooks signature)",
    )
    async def fathom_webhook(request: Request[Any, Any, Any], integration_id: FromPath[str]) -> Response[Accepted]:
        headers = read_headers(request.scope["headers"])
        with webhook_span(integration_id, headers) if tracing.on else NO_SPAN:
            target = webhooks.admit(integration_id, headers)
            try:
                body = await request.body()
            except RequestEntityTooLarge:
                raise webhooks.body_too_large() from None
            raw = webhooks.raw_call(target, integration_id, headers, body)
            return Response(await webhooks.publish(raw), status_code=202)

    return fathom_webhook
