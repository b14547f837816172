"""One trace per call across the real processes, exported over OTLP/HTTP to an endpoint this test
serves: a webhook's trace runs from the gateway's request to the normalizer's MessageUpserted
publish, a pulled call's from the scheduler's SyncRequested through the pull run and its provider
requests to the same publish; and the event on NATS carries that trace in its ``traceparent``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app

from .conftest import Stack, eventually, fathom_meeting, signed_headers
from .otlp_sink import OtlpSink, ReceivedSpan, otlp_sink

PRODUCER, CONSUMER, SERVER, CLIENT = 4, 5, 2, 3  # OTLP's SpanKind numbers


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with otlp_sink() as s:
        yield s


@pytest.fixture
def service_env(service_env: dict[str, str], sink: OtlpSink) -> dict[str, str]:
    return {
        **service_env,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.url + "/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the test fast
        # A first sync reaches back over the fake's history, and the due loop ticks every second.
        "CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS": "400",
        "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1",
    }


class Upserted:
    """MessageUpserted events with their headers, from a durable consumer of the test's own."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.events: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def open(self) -> None:
        self.nc = await nats.connect(self.nats_url)
        self.sub = await self.nc.jetstream().pull_subscribe(
            "messages.upserted.>", durable="trace-test", stream="MESSAGES"
        )

    async def close(self) -> None:
        await self.nc.close()

    async def poll(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        try:
            batch = await self.sub.fetch(100, timeout=0.3)
        except (nats.errors.TimeoutError, TimeoutError):
            batch = []
        for msg in batch:
            self.events.append((json.loads(msg.data), dict(msg.headers or {})))
            await msg.ack()
        return self.events


@pytest.fixture
async def upserted(stack: Stack) -> AsyncIterator[Upserted]:
    u = Upserted(stack.nats_url)
    await u.open()
    try:
        yield u
    finally:
        await u.close()


def _traceparent(headers: dict[str, str]) -> tuple[str, str]:
    version, trace_id, parent_id, _flags = headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, parent_id


def _one(spans: list[ReceivedSpan], **match: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name, s.span_id, s.parent_span_id) for s in spans])
    return found[0]


def _no_secrets(spans: list[ReceivedSpan], *secrets: str) -> None:
    for span in spans:
        for key, value in span.attributes.items():
            text = str(value)
            for secret in secrets:
                assert secret not in text, (span.name, key)


async def test_one_webhook_is_one_trace_from_the_request_to_the_message_upserted_publish(
    stack: Stack, sink: OtlpSink, upserted: Upserted
) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(710001)
    body = json.dumps(meeting).encode()
    accepted = await stack.client("gateway").post(
        f"/v1/webhooks/fathom/{integration_id}",
        content=body,
        headers=signed_headers(secret, body, "msg_trace_" + uuid.uuid4().hex),
    )
    assert accepted.status_code == 202, accepted.text

    events = await eventually(upserted.poll, timeout=30)
    assert len(events) == 1
    event, headers = events[0]
    trace_id, publish_span_id = _traceparent(headers)

    def complete() -> list[ReceivedSpan] | None:
        # each service exports on its own schedule: wait for the gateway's span and the publish
        spans = sink.trace(trace_id)
        publish = any(s.span_id == publish_span_id for s in spans)
        gateway = any(s.service == "ingest-gateway" and s.kind == SERVER for s in spans)
        return spans if publish and gateway else None

    spans = await eventually(complete, timeout=30)
    request = _one(spans, service="ingest-gateway", kind=SERVER)
    assert request.name == "POST /v1/webhooks/fathom/{integration_id}"
    assert request.parent_span_id == ""  # the sender sent no trace: the webhook starts one
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["callstream.workspace_id"] == "acme"
    assert request.attributes["callstream.integration_id"] == integration_id
    assert request.attributes["callstream.message.external_id"] == "710001"
    # One span for the webhook, its steps as events (a span per step doubled the gateway's CPU).
    assert request.events == ("verified", "published")

    stored = _one(spans, service="normalizer", name="normalizer store")
    assert stored.parent_span_id == request.span_id
    assert stored.attributes["callstream.message_id"] == event["message_id"]
    assert stored.attributes["callstream.message.change"] == "created"
    publish = _one(spans, service="normalizer", kind=PRODUCER)
    assert publish.name == "messages.upserted.fathom publish"
    assert (publish.span_id, publish.parent_span_id) == (publish_span_id, stored.span_id)
    assert publish.attributes["callstream.message.message_id"] == event["message_id"]
    assert {s.service for s in spans} <= {"ingest-gateway", "normalizer", "linker"}

    # The linker drops its cached link on the event: the last step of the trace.
    invalidated = await eventually(
        lambda: [s for s in sink.trace(trace_id) if s.name == "linker cache invalidate"], timeout=30
    )
    assert [(s.service, s.parent_span_id) for s in invalidated] == [("linker", publish_span_id)]

    # A link answered from the linker's cache continues its caller's trace.
    caller_trace = uuid.uuid4().hex
    linker = stack.client("linker")
    params = {"workspace_id": "acme", "source": "fathom", "external_id": "710001"}

    async def served_hot() -> list[ReceivedSpan]:
        r = await linker.get("/v1/links", params=params, headers={"traceparent": f"00-{caller_trace}-{'1' * 16}-01"})
        assert r.status_code == 200, r.text
        return [s for s in sink.trace(caller_trace) if s.service == "linker" and s.kind == SERVER]

    served = await eventually(served_hot, timeout=30, interval=0.3)
    assert served[0].parent_span_id == "1" * 16
    assert served[0].attributes["http.response.status_code"] == 200

    # The batch that stored it is a trace of its own, linked to each message's trace.
    batch = _one(sink.all(), name="normalizer store batch")
    assert (trace_id, request.span_id) in batch.links
    assert (batch.trace_id, batch.span_id) in stored.links

    transcript_line = meeting["transcript"][0]["text"]
    _no_secrets(sink.all(), secret, *stack.admin_tokens.values(), "e2e-api-key", transcript_line)


async def test_a_webhook_continues_the_senders_trace(stack: Stack, sink: OtlpSink, upserted: Upserted) -> None:
    integration_id, secret = await stack.fathom_integration()
    body = json.dumps(fathom_meeting(710002)).encode()
    sender_trace, sender_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {
        **signed_headers(secret, body, "msg_trace_" + uuid.uuid4().hex),
        "traceparent": f"00-{sender_trace}-{sender_span}-01",
    }
    accepted = await stack.client("gateway").post(
        f"/v1/webhooks/fathom/{integration_id}", content=body, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    events = await eventually(upserted.poll, timeout=30)
    assert _traceparent(events[0][1])[0] == sender_trace
    request = await eventually(lambda: [s for s in sink.trace(sender_trace) if s.kind == SERVER], timeout=30)
    assert request[0].parent_span_id == sender_span


async def test_a_pulled_call_is_one_trace_from_the_scheduler_to_the_message_upserted_publish(
    stack: Stack, sink: OtlpSink, upserted: Upserted
) -> None:
    fathom = FathomState(FathomConfig(seed=11, meetings=2, span_days=30))
    async with serve_in_process(fathom_app(fathom)) as fathom_url:
        r = await stack.client("gateway").post(
            "/v1/integrations",
            json={
                "workspace_id": "pull-traced",
                "provider": "fathom",
                "credentials": {"api_key": "fathom-test-key"},
                "base_url": fathom_url + "/external/v1",
            },
        )
        assert r.status_code == 201, r.text
        integration_id = r.json()["id"]
        events = await eventually(lambda: _at_least(upserted, 2), timeout=90, interval=0.5)

    for event, headers in events:
        trace_id, publish_span_id = _traceparent(headers)

        def complete(trace_id: str = trace_id, span_id: str = publish_span_id) -> list[ReceivedSpan] | None:
            # each service exports on its own schedule (and a run's span only when the run ends):
            # wait until every hop has arrived
            spans = sink.trace(trace_id)
            names = {(s.service, s.name) for s in spans}
            arrived = (
                any(s.span_id == span_id for s in spans)
                and {
                    ("ingest-gateway", "pull run"),
                    ("ingest-gateway", "sync.events.fathom publish"),
                    ("ingest-gateway", "calls.raw.fathom publish"),
                }
                <= names
                and any(s.service == "scheduler" and s.kind == PRODUCER for s in spans)
            )
            return spans if arrived else None

        spans = await eventually(complete, timeout=30)
        requested = _one(spans, service="scheduler", kind=PRODUCER)
        assert requested.name == "sync.requested.fathom publish"
        assert requested.parent_span_id == ""
        assert requested.attributes["callstream.integration_id"] == integration_id
        run_id = requested.attributes["callstream.run_id"]

        runs = [s for s in spans if s.service == "ingest-gateway" and s.name == "pull run"]
        assert runs, spans
        assert all(s.parent_span_id == requested.span_id and s.kind == CONSUMER for s in runs)
        assert {s.attributes["callstream.run_id"] for s in runs} == {run_id}
        run_spans = {s.span_id for s in runs}
        provider_requests = [s for s in spans if s.kind == CLIENT]
        assert provider_requests
        assert all(s.parent_span_id in run_spans for s in provider_requests)
        assert all(s.attributes["http.request.method"] == "GET" for s in provider_requests)

        raw_publish = _one(
            spans, name="calls.raw.fathom publish", attributes=_with(spans, "callstream.message.external_id", event)
        )
        assert raw_publish.parent_span_id in run_spans
        # The run's calls share its trace: each call's own spans hang off its publish.
        stored = _one(spans, service="normalizer", name="normalizer store", parent_span_id=raw_publish.span_id)
        assert stored.attributes["callstream.message.external_id"] == event["external_id"]
        assert stored.attributes["callstream.message_id"] == event["message_id"]
        publish = _one(spans, service="normalizer", kind=PRODUCER, parent_span_id=stored.span_id)
        assert publish.span_id == publish_span_id

        # The run's progress and end go back to the scheduler in the same trace.
        events_published = [s for s in spans if s.name == "sync.events.fathom publish"]
        assert events_published
        assert all(s.parent_span_id in run_spans for s in events_published)
        applied = await eventually(
            lambda trace_id=trace_id: [s for s in sink.trace(trace_id) if s.name == "scheduler process"], timeout=30
        )
        assert {s.parent_span_id for s in applied} <= {s.span_id for s in events_published}

    _no_secrets(sink.all(), "fathom-test-key", *stack.admin_tokens.values())


async def _at_least(upserted: Upserted, n: int) -> list[tuple[dict[str, Any], dict[str, str]]] | None:
    events = await upserted.poll()
    return events if len(events) >= n else None


def _with(spans: list[ReceivedSpan], key: str, event: dict[str, Any]) -> dict[str, Any]:
    """The attributes of the span whose ``key`` names the event's external id (for ``_one``)."""
    for span in spans:
        if span.attributes.get(key) == event["external_id"] and span.name == "calls.raw.fathom publish":
            return span.attributes
    raise AssertionError(f"no raw publish span for {event['external_id']}")
