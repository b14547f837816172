"""The ceiling: the least an intake must do, with nothing else. Verify the Standard Webhooks
signature over the raw body, decode just enough to know it is a meeting, publish one RawCall to
JetStream and answer 202 after the ack. No middleware, no logging, no metrics, no cache lookups.

Served exactly as the gateway serves itself (uvicorn, uvloop, httptools, one process). With
``BENCH_RAW_ASGI=1`` the same steps run as a bare ASGI app, without litestar: the gateway answers
webhooks in front of litestar, so a litestar ceiling alone would flatter its ratio.

"Enough to know it is a meeting" is a probe of ``recording_id`` (an integer: ``"123"`` is refused,
as the gateway refuses it). With ``BENCH_RULE=1`` it is instead the whole rule the gateway must
apply since issue #17 (``callstream.contracts.providers.fathom_meeting_id``: every documented field
of its type, nesting bounded), so the two bare ceilings separate what that rule costs from what
the gateway's own machinery costs.
Environment: BENCH_NATS_URL, BENCH_SECRET (whsec_...), BENCH_WORKSPACE, BENCH_PORT, BENCH_RAW_ASGI,
BENCH_RULE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import uvicorn
from litestar import Litestar, Request, Response, post

from callstream.contracts import RawCall, raw_calls_subject, webhook_event_id
from callstream.contracts.providers import PayloadRejected, fathom_meeting_id

KEY = base64.b64decode(
    os.environ.get("BENCH_SECRET", "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldCE=").removeprefix("whsec_")
)
WORKSPACE = os.environ.get("BENCH_WORKSPACE", "bench")
state: dict[str, object] = {}


class Probe(msgspec.Struct):
    recording_id: int


_probe = msgspec.json.Decoder(Probe).decode


def meeting_id(body: bytes) -> int | None:
    """The meeting's id, or ``None`` when the body is not one (answered 400)."""
    try:
        if os.environ.get("BENCH_RULE") == "1":
            return fathom_meeting_id(body)
        return _probe(body).recording_id
    except (msgspec.ValidationError, msgspec.DecodeError, PayloadRejected):
        return None


encode = msgspec.json.Encoder().encode


async def accept(
    integration_id: str, wid: str | None, ts: str | None, sigs: str | None, body: bytes
) -> tuple[int, bytes]:
    """Status and JSON body: verify, probe, publish, wait for the ack."""
    if not (wid and ts and sigs) or abs(time.time() - int(ts)) > 300:
        return 401, b'{"error":"unauthorized"}'
    expected = hmac.new(KEY, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
    if not any(hmac.compare_digest(base64.b64decode(s.partition(",")[2]), expected) for s in sigs.split()):
        return 401, b'{"error":"unauthorized"}'
    recording_id = meeting_id(body)
    if recording_id is None:
        return 400, b'{"error":"not_a_meeting"}'
    event_id = webhook_event_id(integration_id, wid)
    raw = RawCall(
        event_id=event_id,
        source="fathom",
        workspace_id=WORKSPACE,
        integration_id=integration_id,
        external_id=str(recording_id),
        origin="webhook",
        received_at=datetime.now(UTC),
        payload=msgspec.Raw(body),
    )
    ack = await state["js"].publish(
        raw_calls_subject("fathom", integration_id), encode(raw), timeout=5, headers={"Nats-Msg-Id": event_id}
    )  # type: ignore[attr-defined]
    return 202, encode({"event_id": event_id, "duplicate": bool(ack.duplicate)})


@post("/v1/webhooks/fathom/{integration_id:str}", status_code=202, request_max_body_size=16 * 1024 * 1024)
async def webhook(request: Request, integration_id: str) -> Response:  # type: ignore[type-arg]
    headers = request.headers
    status, answer = await accept(
        integration_id,
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
        await request.body(),
    )
    return Response(answer, status_code=status, media_type="application/json")


_PREFIX = "/v1/webhooks/fathom/"


async def raw_asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                nc = await nats.connect(os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222"))
                state["nc"], state["js"] = nc, nc.jetstream()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["nc"].close()  # type: ignore[attr-defined]
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(_PREFIX):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    status, answer = await accept(
        scope["path"][len(_PREFIX) :],
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
        b"".join(chunks),
    )
    headers_out = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers_out})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    nc = await nats.connect(os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222"))
    state["js"] = nc.jetstream()
    try:
        yield
    finally:
        await nc.close()


app = Litestar([webhook], lifespan=[lifespan], logging_config=None)

if __name__ == "__main__":
    # The same options as callstream.runtime.serve_http, which the gateway uses.
    uvicorn.run(
        raw_asgi_app if os.environ.get("BENCH_RAW_ASGI") == "1" else app,
        host="127.0.0.1",
        port=int(os.environ.get("BENCH_PORT", "18100")),
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
