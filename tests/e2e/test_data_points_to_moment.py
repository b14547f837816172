"""A Fathom webhook becomes a message; data points recorded over HTTP with their evidence come back
from the feature's and the message's endpoints, each linked to the moment it was heard."""

import json
import uuid

import nats

from callstream.contracts import DATAPOINTS, NORMALIZER_DATAPOINTS_CONSUMER

from .conftest import Stack, eventually, fathom_meeting, signed_headers


async def test_data_points_with_evidence_link_to_their_moment(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    meeting = fathom_meeting(700101)
    body = json.dumps(meeting).encode()
    r = await stack.client("gateway").post(
        f"/v1/webhooks/fathom/{integration_id}",
        content=body,
        headers=signed_headers(secret, body, "msg_dp_" + uuid.uuid4().hex),
    )
    assert r.status_code == 202, r.text
    linker = stack.client("linker")

    async def message_id() -> str | None:
        r = await linker.get("/v1/links", params={"workspace_id": "acme", "source": "fathom", "external_id": "700101"})
        return r.json()["message_id"] if r.status_code == 200 else None

    mid = await eventually(message_id)
    share = "https://fathom.video/share/e2e-700101"
    extractor = {"name": "revenue", "version": "1.0"}
    points = [
        {
            "key": "mrr",
            "category": "revenue",
            "numeric_value": 1200.0,
            "feature_id": "pricing",
            "evidence": {"t": 478.25, "quote": "about twelve hundred a month"},
            "extractor": extractor,
        },
        {
            "key": "seats",
            "category": "revenue",
            "integer_value": 40,
            "feature_id": "pricing",
            "evidence": {"t": 25},
            "extractor": extractor,
        },
    ]
    r = await linker.post(f"/v1/messages/{mid}/data-points", json={"data_points": points})
    assert r.status_code == 202, r.text

    async def feature_points() -> list | None:
        r = await linker.get("/v1/features/pricing/data-points", params={"workspace_id": "acme"})
        items = r.json()["items"] if r.status_code == 200 else []
        return items if len(items) == 2 else None

    items = {i["key"]: i for i in await eventually(feature_points)}
    assert items["mrr"]["link"]["url"] == f"{share}?timestamp=478.25"
    assert items["seats"]["link"]["url"] == f"{share}?timestamp=25"
    assert all(i["link"]["moment"] and i["message_id"] == mid and i["source"] == "fathom" for i in items.values())
    assert (items["mrr"]["numeric_value"], items["seats"]["integer_value"]) == (1200.0, 40)

    # a newer extractor replaces its older value; the older one sent again changes nothing
    newer = {**points[0], "numeric_value": 1500.0, "extractor": {"name": "revenue", "version": "1.1"}}
    assert (await linker.post(f"/v1/messages/{mid}/data-points", json={"data_points": [newer]})).status_code == 202
    older = {**points[0], "numeric_value": 900.0, "extractor": {"name": "revenue", "version": "0.9"}}
    assert (await linker.post(f"/v1/messages/{mid}/data-points", json={"data_points": [older]})).status_code == 202

    async def replaced() -> dict | None:
        r = await linker.get(f"/v1/messages/{mid}/data-points", params={"key": "mrr"})
        [item] = r.json()["items"]
        return item if item["extractor"]["version"] == "1.1" else None

    await eventually(replaced)
    nc = await nats.connect(stack.nats_url)
    try:

        async def all_handled() -> bool:
            info = await nc.jetstream().consumer_info(DATAPOINTS, NORMALIZER_DATAPOINTS_CONSUMER.durable)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(all_handled)
    finally:
        await nc.close()
    item = await replaced()
    assert item is not None
    assert item["numeric_value"] == 1500.0
    # the moment link of the message itself has the same form
    r = await linker.get(f"/v1/messages/{mid}/link", params={"t": 645})
    assert (r.json()["url"], r.json()["moment"]) == (f"{share}?timestamp=645", True)
