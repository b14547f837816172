"""POST /v1/webhooks/fathom/{id} against real PostgreSQL and JetStream."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
from gateway_harness import ADMIN, Gateway, signed_headers
from nats.js import JetStreamContext

from callstream.contracts import CALLS_RAW, RawCall, webhook_event_id

MEETING = json.dumps(
    {"recording_id": 512330871, "title": "Pilot scoping", "transcript": [{"text": "héllo", "timestamp": "00:00:04"}]},
    ensure_ascii=False,
    indent=1,
).encode()


async def _raw_messages(js: JetStreamContext) -> list[Any]:
    info = await js.stream_info(CALLS_RAW)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        try:
            found.append(await js.get_msg(CALLS_RAW, seq))
        except nats.js.errors.NotFoundError:  # purged
            continue
    return found


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_accepted_after_ack_and_published_byte_for_byte(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    response = await gateway.deliver(integration["id"], MEETING, webhook_id="msg_first")
    assert response.status_code == 202, response.text
    event_id = webhook_event_id(integration["id"], "msg_first")
    assert response.json() == {"event_id": event_id, "duplicate": False}
    [msg] = await _raw_messages(js)
    assert msg.subject == f"calls.raw.fathom.{integration['id']}"  # erasure purges by this token
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == event_id
    raw = msgspec.json.decode(msg.data, type=RawCall)
    assert bytes(raw.payload) == MEETING
    assert (raw.source, raw.origin, raw.external_id) == ("fathom", "webhook", "512330871")
    assert (raw.workspace_id, raw.integration_id, raw.event_id) == ("ws-1", integration["id"], event_id)
    assert raw.traceparent
    assert re.fullmatch(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-01", raw.traceparent)  # a new W3C trace
    assert msg.headers["traceparent"] == raw.traceparent


async def test_a_purge_by_subject_reaches_exactly_one_integrations_raw_events(
    gateway: Gateway, js: JetStreamContext
) -> None:
    """What erasing an integration relies on: its raw events (transcripts) can be purged from
    CALLS_RAW by subject filter without touching another integration's, in the same workspace."""
    erased, kept = await gateway.create_fathom(), await gateway.create_fathom()
    for n, integration in enumerate((erased, kept, erased)):
        response = await gateway.deliver(integration["id"], MEETING, webhook_id=f"msg_purge_{n}")
        assert response.status_code == 202, response.text
    await js.purge_stream(CALLS_RAW, subject=f"calls.raw.fathom.{erased['id']}")
    left = [msgspec.json.decode(m.data, type=RawCall) for m in await _raw_messages(js)]
    assert [r.integration_id for r in left] == [kept["id"]]
    assert left[0].event_id == webhook_event_id(kept["id"], "msg_purge_1")


async def test_caller_trace_context_is_kept(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await gateway.deliver(integration["id"], MEETING, headers={"traceparent": trace})
    assert response.status_code == 202
    [msg] = await _raw_messages(js)
    assert msg.headers["traceparent"] == trace


async def test_redelivery_answers_2xx_and_publishes_nothing_new(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    first = await gateway.deliver(integration["id"], MEETING, webhook_id="msg_again")
    # Svix stamps every attempt with its own time: a resend carries a new timestamp and signature.
    again = await gateway.deliver(integration["id"], MEETING, webhook_id="msg_again", timestamp=int(time.time()) + 2)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert len(await _raw_messages(js)) == 1


async def test_concurrent_duplicates_give_one_raw_event(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    responses = await asyncio.gather(
        *(gateway.deliver(integration["id"], MEETING, webhook_id="msg_same_moment") for _ in range(12))
    )
    assert {r.status_code for r in responses} == {202}
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 11
    assert len(await _raw_messages(js)) == 1


async def test_svix_header_names(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    headers = {k.replace("Webhook", "Svix"): v for k, v in signed_headers(MEETING).items()}
    response = await gateway.client.post(f"/v1/webhooks/fathom/{integration['id']}", content=MEETING, headers=headers)
    assert response.status_code == 202, response.text
    assert len(await _raw_messages(js)) == 1


async def _assert_rejected(response: object, status: int, code: str) -> None:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == code
    assert body["detail"]


async def test_rejections_publish_nothing(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    iid = integration["id"]
    bad_sig = signed_headers(MEETING) | {"Webhook-Signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    await _assert_rejected(
        await gateway.client.post(f"/v1/webhooks/fathom/{iid}", content=MEETING, headers=bad_sig),
        401,
        "invalid_signature",
    )
    no_headers = {"content-type": "application/json"}
    await _assert_rejected(
        await gateway.client.post(f"/v1/webhooks/fathom/{iid}", content=MEETING, headers=no_headers),
        401,
        "missing_signature_headers",
    )
    await _assert_rejected(
        await gateway.deliver(iid, MEETING, timestamp=int(time.time()) - 600), 401, "stale_timestamp"
    )
    other_secret = "whsec_" + "b3RoZXItc2VjcmV0LW9mLTI0LWJ5dGVzIQ=="
    await _assert_rejected(await gateway.deliver(iid, MEETING, secret=other_secret), 401, "invalid_signature")
    await _assert_rejected(await gateway.deliver(iid, b"not json at all"), 400, "invalid_json")
    await _assert_rejected(await gateway.deliver(iid, b'{"title": "no recording id"}'), 400, "not_a_meeting")
    await _assert_rejected(await gateway.deliver(iid, b'[{"recording_id": 1}]'), 400, "not_a_meeting")
    await _assert_rejected(await gateway.deliver(iid, b'{"recording_id": true}'), 400, "not_a_meeting")
    await _assert_rejected(await gateway.deliver(str(uuid.uuid4()), MEETING), 404, "unknown_integration")
    await _assert_rejected(await gateway.deliver("not-a-uuid", MEETING), 404, "unknown_integration")
    assert await _raw_messages(js) == []


async def test_integration_without_secret_refuses_everything(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom(webhook_secret=None)
    await _assert_rejected(await gateway.deliver(integration["id"], MEETING), 401, "no_webhook_secret")
    assert await _raw_messages(js) == []


async def test_disabled_integration_is_404(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    assert (await gateway.deliver(integration["id"], MEETING)).status_code == 202
    disabled = await gateway.client.delete(f"/v1/integrations/{integration['id']}", headers=ADMIN)
    assert disabled.status_code == 200
    await gateway.wait_cached(integration["id"], status="disabled")
    response = await gateway.deliver(integration["id"], MEETING)
    await _assert_rejected(response, 404, "unknown_integration")
    assert "webhook-delivery" not in response.headers  # an integration may be enabled again: retry
    assert len(await _raw_messages(js)) == 1


async def test_the_last_accepted_webhook_of_each_integration_is_a_metric(gateway: Gateway) -> None:
    """For the per-integration "webhooks stopped" alert (deploy/observability)."""
    integration = await gateway.create_fathom()
    before = time.time()
    assert (await gateway.deliver(integration["id"], MEETING)).status_code == 202
    text = (await gateway.client.get("/metrics")).text
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith("callstream_gateway_webhook_last_accepted_timestamp_seconds{")
        and f'integration_id="{integration["id"]}"' in line
    ]
    assert before <= float(line.rsplit(" ", 1)[1]) <= time.time()


async def test_body_limit_from_content_length(gateway: Gateway, js: JetStreamContext) -> None:
    integration = await gateway.create_fathom()
    big = b'{"recording_id": 1, "pad": "' + b"x" * (gateway.settings.max_body + 10) + b'"}'
    response = await gateway.deliver(integration["id"], big)
    await _assert_rejected(response, 413, "body_too_large")
    assert response.headers["webhook-delivery"] == "abort-message"  # final: Svix stops resending
    assert await _raw_messages(js) == []


async def test_body_limit_while_streaming(
    database_url: str, nats_url: str, jetstream: object, fake_provider: object, js: JetStreamContext
) -> None:
    from gateway_harness import make_settings, start_gateway

    settings = make_settings(database_url, nats_url, CALLSTREAM_GATEWAY_MAX_BODY=4096)
    async for gw in start_gateway(settings, fake_provider):  # type: ignore[arg-type]
        integration = await gw.create_fathom()
        body = b'{"recording_id": 1, "pad": "' + b"x" * 8000 + b'"}'
        headers = signed_headers(body)

        hot = gw.app.state.hot_webhooks
        answers = []
        for enabled in (True, False):  # in front of litestar, then through the route
            hot.enabled, before = enabled, hot.answered
            path = f"/v1/webhooks/fathom/{integration['id']}"
            answers.append(await _stream_without_length(gw, path, body, headers))
            assert hot.answered == before + enabled
        hot.enabled = True
        assert answers[0] == answers[1]
        status, reply = answers[0]
        assert status == 413
        assert reply["error"] == "body_too_large"
        small = b'{"recording_id": 7}'
        assert (await gw.deliver(integration["id"], small)).status_code == 202
    assert len(await _raw_messages(js)) == 1


async def _stream_without_length(
    gw: Gateway, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """Drive the ASGI app directly: the body arrives in 1000-byte chunks with no Content-Length
    (the test client always sends one). The 413 comes before any publish, so the app's broker on the
    client's loop is never touched from this one."""
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received < len(chunks):
            received += 1
            return {"type": "http.request", "body": chunks[received - 1], "more_body": received < len(chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await gw.app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(payload)


async def test_cache_follows_changes_made_by_another_replica(gateway: Gateway) -> None:
    """An integration written by another process reaches this replica's cache through NOTIFY."""
    import asyncpg
    from gateway_harness import WEBHOOK_SECRET

    from callstream.gateway._credentials import seal_webhook_secret

    iid = uuid.uuid4()
    conn = await asyncpg.connect(gateway.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "insert into integrations (id, workspace_id, provider, auth_kind, webhook_secret)"
            " values ($1, 'ws-9', 'fathom', 'api_key', $2)",
            iid,
            seal_webhook_secret(gateway.settings.cipher(), str(iid), WEBHOOK_SECRET),
        )
        await gateway.wait_cached(str(iid), timeout=2.0)
        assert (await gateway.deliver(str(iid), MEETING)).status_code == 202
        await conn.execute("update integrations set status = 'disabled' where id = $1", iid)
        await gateway.wait_cached(str(iid), status="disabled", timeout=2.0)
        assert (await gateway.deliver(str(iid), MEETING)).status_code == 404
        await conn.execute("delete from integrations where id = $1", iid)
        await gateway.wait_cached(str(iid), status=None, timeout=2.0)
    finally:
        await conn.close()


async def test_the_hot_path_answers_as_the_route_does(gateway: Gateway, js: JetStreamContext) -> None:
    """Every kind of answer, sent once in front of litestar and once through the route: the same
    status, headers and bytes, and the same metrics series."""
    hot = gateway.app.state.hot_webhooks
    iid = (await gateway.create_fathom())["id"]
    no_secret = (await gateway.create_fathom(webhook_secret=None))["id"]
    disabled = (await gateway.create_fathom())["id"]
    assert (await gateway.client.delete(f"/v1/integrations/{disabled}", headers=ADMIN)).status_code == 200
    await gateway.wait_cached(disabled, status="disabled")
    rid = {"x-request-id": "compare-1"}
    assert (await gateway.deliver(iid, MEETING, webhook_id="msg_seen", headers=rid)).status_code == 202
    big = b'{"recording_id": 1, "pad": "' + b"x" * (gateway.settings.max_body + 10) + b'"}'
    bad_sig = signed_headers(MEETING) | {"Webhook-Signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    path = f"/v1/webhooks/fathom/{iid}"
    cases: dict[str, Any] = {
        "accepted again": lambda: gateway.deliver(iid, MEETING, webhook_id="msg_seen", headers=rid),
        "bad signature": lambda: gateway.client.post(path, content=MEETING, headers=bad_sig | rid),
        "no signature": lambda: gateway.client.post(path, content=MEETING, headers=rid),
        "stale": lambda: gateway.deliver(iid, MEETING, timestamp=int(time.time()) - 600, headers=rid),
        "not json": lambda: gateway.deliver(iid, b"not json", webhook_id="msg_x", headers=rid),
        "not a meeting": lambda: gateway.deliver(iid, b'{"title": "x"}', webhook_id="msg_x", headers=rid),
        "unknown": lambda: gateway.deliver(str(uuid.uuid4()), MEETING, webhook_id="msg_x", headers=rid),
        "disabled": lambda: gateway.deliver(disabled, MEETING, webhook_id="msg_x", headers=rid),
        "no secret": lambda: gateway.deliver(no_secret, MEETING, webhook_id="msg_x", headers=rid),
        "too large": lambda: gateway.deliver(iid, big, webhook_id="msg_x", headers=rid),
    }
    counted_before = await _webhook_requests_counted(gateway)
    statuses = {}
    for name, send in cases.items():
        hot.enabled, before = True, hot.answered
        in_front = await send()
        assert hot.answered == before + 1, name
        hot.enabled = False
        routed = await send()
        hot.enabled = True
        assert hot.answered == before + 1, name
        assert in_front.status_code == routed.status_code, name
        assert sorted(in_front.headers.multi_items()) == sorted(routed.headers.multi_items()), name
        assert in_front.content == routed.content, name
        statuses[name] = in_front.status_code
    assert statuses == {
        "accepted again": 202,
        "bad signature": 401,
        "no signature": 401,
        "stale": 401,
        "not json": 400,
        "not a meeting": 400,
        "unknown": 404,
        "disabled": 404,
        "no secret": 401,
        "too large": 413,
    }
    assert len(await _raw_messages(js)) == 1
    before = hot.answered
    malformed_host = await gateway.deliver(iid, MEETING, headers=rid | {"Host": "gateway.example/x"})
    assert hot.answered == before  # left to litestar's router, which refuses it
    assert malformed_host.status_code == 400, malformed_host.text
    assert len(await _raw_messages(js)) == 1
    counted = await _webhook_requests_counted(gateway)
    assert {route for route, _ in counted} == {"/v1/webhooks/fathom/{integration_id}"}
    added = {status: n - counted_before.get((route, status), 0) for (route, status), n in counted.items()}
    assert {status: n for status, n in added.items() if n} == {"202": 2, "400": 4, "401": 8, "404": 4, "413": 2}


async def _webhook_requests_counted(gateway: Gateway) -> dict[tuple[str, str], float]:
    """``callstream_http_requests_total`` of the webhook route, by (route label, status)."""
    counted = {}
    for line in (await gateway.client.get("/metrics")).text.splitlines():
        if line.startswith("callstream_http_requests_total{") and "webhooks" in line:
            route = re.search(r'route="([^"]+)"', line)
            status = re.search(r'status="(\d+)"', line)
            assert route, line
            assert status, line
            counted[(route.group(1), status.group(1))] = float(line.rsplit(" ", 1)[1])
    return counted


@pytest.mark.parametrize("when", ["before the body is read", "after the body is read"])
async def test_a_fault_in_the_hot_path_leaves_the_request_to_the_route(
    gateway: Gateway, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The route answers instead, with the body the hot path had already read replayed to it."""
    hot = gateway.app.state.hot_webhooks
    iid = (await gateway.create_fathom())["id"]

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the hot path")

    if when == "before the body is read":
        monkeypatch.setattr(hot, "_answer", broken)
    else:
        webhooks = hot._webhooks

        class BrokenAfterTheBody:
            max_body = webhooks.max_body
            admit = webhooks.admit
            raw_call = staticmethod(broken)

        monkeypatch.setattr(hot, "_webhooks", BrokenAfterTheBody())
    before = hot.answered
    response = await gateway.deliver(iid, MEETING, webhook_id="msg_fault")
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": webhook_event_id(iid, "msg_fault"), "duplicate": False}
    assert hot.answered == before
    [msg] = await _raw_messages(js)
    assert bytes(msgspec.json.decode(msg.data, type=RawCall).payload) == MEETING
