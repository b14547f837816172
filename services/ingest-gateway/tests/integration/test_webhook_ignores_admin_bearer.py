"""The internet-facing webhook path takes Standard Webhooks signatures only: an admin bearer token
(the gateway's own included) opens nothing there, on the hot path and on the route alike."""

from __future__ import annotations

import json
import time
import uuid

import nats
import pytest
from gateway_harness import ADMIN, Gateway, signed_headers

from callstream.contracts import CALLS_RAW


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "route"])
async def test_an_admin_bearer_on_a_webhook_bypasses_nothing(gateway: Gateway, nats_url: str, hot_path: bool) -> None:
    integration = await gateway.create_fathom("ws-admin-bearer")
    iid = integration["id"]
    await gateway.wait_cached(iid)
    hot = gateway.app.state.hot_webhooks
    hot.enabled = hot_path
    body = json.dumps({"recording_id": 9001, "title": "t"}).encode()
    url = f"/v1/webhooks/fathom/{iid}"
    good = signed_headers(body)
    try:
        cases = {
            "admin bearer alone": ({"content-type": "application/json", **ADMIN}, url, 401),
            "admin bearer, bad signature": ({**good, "Webhook-Signature": "v1,AAAA", **ADMIN}, url, 401),
            "admin bearer, stale": ({**signed_headers(body, timestamp=int(time.time()) - 3600), **ADMIN}, url, 401),
            "admin bearer, unknown integration": ({**good, **ADMIN}, f"/v1/webhooks/fathom/{uuid.uuid4()}", 404),
        }
        for name, (headers, path, expected) in cases.items():
            r = await gateway.client.post(path, content=body, headers=headers)
            assert r.status_code == expected, (name, r.text)
        nc = await nats.connect(nats_url)
        try:
            assert (await nc.jetstream().stream_info(CALLS_RAW)).state.messages == 0
        finally:
            await nc.close()
        # The same delivery, signed, is taken: the bearer is simply not looked at.
        signed = await gateway.client.post(url, content=body, headers={**signed_headers(body), **ADMIN})
        assert signed.status_code == 202, signed.text
    finally:
        hot.enabled = True
