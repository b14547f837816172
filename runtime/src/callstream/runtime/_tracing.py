"""OpenTelemetry traces for every service, configured by the standard ``OTEL_*`` variables only.

With no OTLP endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``),
or with ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``, no SDK is installed: the API's
tracer stays the no-op one, and ``tracing.on`` stays False. Hot paths test that one boolean before
they build a span, its attributes or read a header, so tracing off costs an attribute lookup.

Everything else is the SDK's own reading of the environment: ``OTEL_SERVICE_NAME`` (the service's
name when unset), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``
(parent-based always-on by default), ``OTEL_BSP_*`` (batching), ``OTEL_EXPORTER_OTLP_*`` (headers,
timeout, compression). Spans go out over OTLP/HTTP (protobuf): no gRPC stack in the services.

Trace context travels in NATS headers as W3C ``traceparent``/``tracestate`` (the carrier is the
``dict[str, str]`` nats-py takes and gives), through the propagators ``OTEL_PROPAGATORS`` names
(W3C trace context and baggage by default).

Spans carry ids (workspace, integration, run, message) and never secrets, tokens or transcripts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, MutableMapping
from random import getrandbits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

__all__ = ["NO_SPAN", "SpanKind", "Tracing", "mark_error", "new_traceparent", "set_attributes", "tracing"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
INSTRUMENTATION = "callstream"
_TRUE = {"true", "1", "yes", "on"}

PRODUCER, CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER


def endpoint_from(env: Mapping[str, str]) -> str | None:
    """The OTLP traces endpoint the environment names, or None (tracing off)."""
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an endpoint, the SDK not disabled, an exporter."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return endpoint_from(env) is not None


class Tracing:
    """The process's tracing switch and the few helpers the services use. ``on`` is the one cheap
    boolean hot paths test first."""

    def __init__(self) -> None:
        self.on = False
        self.tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION)
        self._provider: Any = None

    def configure(self, service_name: str, env: Mapping[str, str] | None = None) -> bool:
        """Install the SDK when the environment asks for it (see the module's doc); True when on.
        Called once per process, by ``service_main``, before the service starts."""
        env = os.environ if env is None else env
        if self.on or not wanted(env):
            return self.on
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME (read by Resource.create) wins over the service's own name.
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(env))))
        trace.set_tracer_provider(provider)
        self._provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION)
        self.on = True
        return True

    def shutdown(self) -> None:
        """Export what is buffered and stop (also done at interpreter exit by the SDK)."""
        if self._provider is not None:
            with contextlib.suppress(Exception):
                self._provider.shutdown()

    # --- spans ------------------------------------------------------------------------------------

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: otel_context.Context | None = None,
        attributes: Mapping[str, Any] | None = None,
        links: list[Link] | None = None,
    ) -> contextlib.AbstractContextManager[Span]:
        """A span made current for the ``with`` block; an error escaping it is recorded on it."""
        return self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=_clean(attributes),
            links=links,
        )

    def annotate(self, attributes: Mapping[str, Any]) -> None:
        """Set ``attributes`` on the current span (ids learnt after it started)."""
        set_attributes(trace.get_current_span(), attributes)

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """A step of the current span's work (cheaper than a span of its own)."""
        trace.get_current_span().add_event(name, _clean(attributes))

    # --- propagation over NATS headers (dict[str, str]) ---------------------------------------------

    def extract(self, headers: Mapping[str, str] | None, traceparent: str | None = None) -> otel_context.Context:
        """The trace context a message carries: its headers, else ``traceparent`` (the copy a wire
        type holds in its body), else an empty context (a new trace)."""
        carrier: Mapping[str, str] = headers or {}
        if TRACEPARENT not in carrier and traceparent:
            carrier = {TRACEPARENT: traceparent}
        return propagate.extract(carrier)

    def inject(self, headers: MutableMapping[str, str], ctx: otel_context.Context | None = None) -> None:
        """Write the current (or ``ctx``'s) trace context into ``headers``."""
        propagate.inject(headers, context=ctx)

    def link_from(self, ctx: otel_context.Context) -> Link | None:
        """A link to the trace ``ctx`` (as ``extract`` gives it) continues; None for a new trace.
        A batch span links to each of its messages this way."""
        span_context = trace.get_current_span(ctx).get_span_context()
        return Link(span_context) if span_context.is_valid else None

    def link_to(self, span: Span) -> Link:
        return Link(span.get_span_context())

    def current_traceparent(self) -> str | None:
        """The current span's context as a ``traceparent`` value (for a wire type's body copy)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier.get(TRACEPARENT)

    def context_of(self, span: Span) -> dict[str, str]:
        """``span``'s context as headers (``traceparent`` and, when any, ``tracestate``)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return carrier


def _traces_url(env: Mapping[str, str]) -> str | None:
    """The signal-specific variable is used as given; the generic one gets ``/v1/traces`` (the
    OTLP/HTTP rule). None lets the exporter read the variables itself."""
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if specific:
        return specific
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if generic:
        return generic.rstrip("/") + "/v1/traces"
    return None


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Attributes without ``None`` values (OpenTelemetry drops them with a warning)."""
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    cleaned = _clean(attributes)
    if cleaned:
        span.set_attributes(cleaned)


def mark_error(span: Span, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description))


# For ``with tracing.span(...) if tracing.on else NO_SPAN:`` (a nullcontext can be entered again).
NO_SPAN: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def new_traceparent() -> str:
    """A new W3C trace context for a message published with tracing off, so its logs and the
    messages that follow from it still share one trace id. Unique, not secret: the
    non-cryptographic generator, as OpenTelemetry's own id generator uses."""
    return f"00-{getrandbits(128) or 1:032x}-{getrandbits(64) or 1:016x}-01"  # all-zero ids are invalid


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span when it is recording, for log lines."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


tracing = Tracing()
