"""Data points over HTTP on real PostgreSQL and JetStream: POST publishes (202 after the ack),
GETs read what the normalizer stored, each with a link to the evidence moment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from callstream.contracts import DATAPOINTS, DATAPOINTS_RECORDED, DataPointRecorded

SHARE = "https://fathom.video/share/SyNtHeTiCsHaReToKeN0001aBcDeFgH"
CALL = "https://fathom.video/calls/884120457"
GONG_ID = "5520183947712650031"
GONG_URL = f"https://us-48213.app.gong.io/call?id={GONG_ID}"
T0 = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)

Client = AsyncTestClient[Litestar]
Seed = Any


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def point(key: str = "mrr", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "category": "revenue",
        "numeric_value": 1200.0,
        "evidence": {"t": 478.5, "quote": "about twelve hundred a month"},
        "extractor": {"name": "revenue", "version": "1.4.0"},
    }
    return {**body, **kw}


async def published(js: Any) -> list[DataPointRecorded]:
    info = await js.stream_info(DATAPOINTS)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        msg = await js.get_msg(DATAPOINTS, seq)
        assert msg.subject == DATAPOINTS_RECORDED
        assert msg.headers["Nats-Msg-Id"]
        assert msg.headers["traceparent"]
        out.append(msgspec.json.decode(msg.data, type=DataPointRecorded))
    return out


async def store(seed: Seed, message_id: uuid.UUID, workspace_id: str, key: str, **kw: Any) -> None:
    """A row as the normalizer writes it (services/normalizer/_data_points.py)."""
    values = {
        "workspace_id": workspace_id,
        "message_id": message_id,
        "data_point_key": key,
        "data_point_category": "revenue",
        "numeric_value": 1.0,
        "extractor_name": "revenue",
        "extractor_version": "1",
        "extractor_version_order": [1],
        "event_id": f"dp-{uuid.uuid4()}",
        "recorded_at": T0,
        **kw,
    }
    if values.get("feature_id"):
        await seed.conn.execute(
            "insert into features (workspace_id, id) values ($1, $2) on conflict do nothing",
            workspace_id,
            values["feature_id"],
        )
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await seed.conn.execute(f"insert into data_points ({names}) values ({params})", *values.values())


async def test_post_publishes_after_the_ack(linker: Client, seed: Seed, admin_token: str, jetstream: Any) -> None:
    token = admin_token
    m = await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    body = {
        "data_points": [
            point(feature_id="pricing"),
            point("urgency_score", category="signal", numeric_value=None, integer_value=7, evidence=None),
            point("champion", category="people", numeric_value=None, text_value="Priya", evidence={"t": 12}),
        ]
    }
    r = await linker.post(f"/v1/messages/{m}/data-points", json=body, headers=bearer(token))
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["message_id"], answer["accepted"], answer["duplicates"]) == (str(m), 3, 0)
    events = await published(jetstream)
    assert [e.event_id for e in events] == answer["event_ids"]
    first = events[0]
    assert (first.workspace_id, first.message_id, first.source, first.external_id) == (
        "acme",
        str(m),
        "fathom",
        "884120457",
    )
    assert (first.key, first.numeric_value, first.feature_id, first.evidence and first.evidence.t) == (
        "mrr",
        1200.0,
        "pricing",
        478.5,
    )
    assert (events[1].integer_value, events[1].evidence, events[2].text_value) == (7, None, "Priya")
    # the same request again: accepted, and deduplicated by JetStream (same Nats-Msg-Id)
    r = await linker.post(f"/v1/messages/{m}/data-points", json=body, headers=bearer(token))
    assert (r.status_code, r.json()["duplicates"], r.json()["event_ids"]) == (202, 3, answer["event_ids"])
    assert len(await published(jetstream)) == 3


async def test_post_refuses_what_cannot_be_stored(linker: Client, seed: Seed, admin_token: str, jetstream: Any) -> None:
    m = await seed.message("acme", "fathom", "1", {"recording_url": SHARE})
    url = f"/v1/messages/{m}/data-points"
    cases = [
        ({"data_points": [point(integer_value=3)]}, "invalid_data_point"),  # two values
        ({"data_points": [point(numeric_value=None)]}, "invalid_data_point"),  # none
        ({"data_points": [point(), point(numeric_value=2.0)]}, "duplicate_data_point"),
        ({"data_points": []}, None),
        ({"data_points": [point()] * 501}, None),
        ({"data_points": [point(extractor={"name": "x", "version": "latest"})]}, None),
        ({"data_points": [point(evidence={"t": -1})]}, None),
        ({"data_points": [point(surprise=1)]}, None),
    ]
    for body, code in cases:
        r = await linker.post(url, json=body, headers=bearer(admin_token))
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) == {"error", "detail"}
        if code:
            assert r.json()["error"] == code
    r = await linker.post(url, json={"data_points": [point(integer_value=3)]}, headers=bearer(admin_token))
    assert r.json()["detail"] == "data_points[0]: exactly one of numeric_value, integer_value, text_value"
    assert await published(jetstream) == []


async def test_a_workspace_token_may_read_but_not_record(linker: Client, seed: Seed, jetstream: Any) -> None:
    reader = await seed.token("acme")
    m = await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    r = await linker.post(f"/v1/messages/{m}/data-points", json={"data_points": [point()]}, headers=bearer(reader))
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert await published(jetstream) == []
    assert (await linker.get(f"/v1/messages/{m}/data-points", headers=bearer(reader))).status_code == 200


async def test_another_workspace_is_not_found(linker: Client, seed: Seed) -> None:
    mine = await seed.token("acme")
    theirs = await seed.message("globex", "fathom", "1", {"recording_url": SHARE})
    await store(seed, theirs, "globex", "mrr", feature_id="pricing")
    for method, path, kw in (
        ("post", f"/v1/messages/{theirs}/data-points", {"json": {"data_points": [point()]}}),
        ("get", f"/v1/messages/{theirs}/data-points", {}),
        ("get", "/v1/features/pricing/data-points", {"params": {"workspace_id": "globex"}}),
        ("get", "/v1/features/pricing/data-points", {"params": {"workspace_id": "acme"}}),  # no such feature
        ("get", f"/v1/messages/{uuid.uuid4()}/data-points", {}),
        ("get", "/v1/messages/not-a-uuid/data-points", {}),
    ):
        r = await getattr(linker, method)(path, headers=bearer(mine), **kw)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"] == "not_found"
    r = await linker.get(f"/v1/messages/{theirs}/data-points")
    assert r.status_code == 401


async def test_gets_link_each_point_to_its_moment(linker: Client, seed: Seed) -> None:
    token = await seed.token("acme")
    fathom = await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE, "url": CALL})
    gong = await seed.message("acme", "gong", GONG_ID, {"url": GONG_URL})
    await store(seed, fathom, "acme", "mrr", feature_id="pricing", evidence_t=478.5, evidence_quote="twelve hundred")
    await store(seed, fathom, "acme", "seats", feature_id="pricing", numeric_value=None, integer_value=40)
    await store(seed, gong, "acme", "mrr", feature_id="pricing", evidence_t=61.0)
    await store(seed, gong, "acme", "urgency", data_point_category="signal", numeric_value=None, text_value="high")

    r = await linker.get("/v1/features/pricing/data-points", params={"workspace_id": "acme"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert r.json()["next_cursor"] is None
    assert [(i["external_id"], i["key"]) for i in items] == [
        (GONG_ID, "mrr"),
        ("884120457", "seats"),
        ("884120457", "mrr"),
    ]
    gong_mrr, seats, fathom_mrr = items
    assert fathom_mrr["link"] == {
        "url": SHARE + "?timestamp=478.5",
        "kind": "recording",
        "origin": "metadata.recording_url",
        "reason": None,
        "moment": True,
        "t": 478.5,
    }
    assert fathom_mrr["evidence"] == {"t": 478.5, "quote": "twelve hundred"}
    assert (fathom_mrr["message_id"], fathom_mrr["source"], fathom_mrr["numeric_value"]) == (str(fathom), "fathom", 1.0)
    assert fathom_mrr["extractor"] == {"name": "revenue", "version": "1"}
    # no evidence moment: the plain link; Gong: plain, with the reason its moment form is unverified
    assert (seats["link"]["url"], seats["link"]["moment"], seats["integer_value"], seats["evidence"]) == (
        SHARE,
        False,
        40,
        None,
    )
    assert gong_mrr["evidence"] == {"t": 61.0, "quote": None}  # every key, always
    assert (gong_mrr["link"]["url"], gong_mrr["link"]["moment"], gong_mrr["link"]["reason"]) == (
        GONG_URL,
        False,
        "moment_unverified",
    )

    r = await linker.get(f"/v1/messages/{gong}/data-points", headers=bearer(token))
    assert [i["key"] for i in r.json()["items"]] == ["urgency", "mrr"]
    r = await linker.get(f"/v1/messages/{gong}/data-points", params={"category": "signal"}, headers=bearer(token))
    assert [(i["key"], i["text_value"], i["feature_id"]) for i in r.json()["items"]] == [("urgency", "high", None)]
    r = await linker.get(
        "/v1/features/pricing/data-points", params={"workspace_id": "acme", "key": "mrr"}, headers=bearer(token)
    )
    assert [i["source"] for i in r.json()["items"]] == ["gong", "fathom"]


async def test_keyset_pages(linker: Client, seed: Seed, admin_token: str) -> None:
    m = await seed.message("acme", "fathom", "1", {"recording_url": SHARE})
    for n in range(7):
        await store(seed, m, "acme", f"k{n}", feature_id="f")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await linker.get(f"/v1/messages/{m}/data-points", params=params, headers=bearer(admin_token))
        assert r.status_code == 200, r.text
        seen += [i["key"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
        await store(seed, m, "acme", f"new{len(seen)}")  # newer rows never shift later pages
    assert seen == [f"k{n}" for n in reversed(range(7))]
    for params in ({"limit": 201}, {"limit": 0}, {"cursor": "bm9wZQ"}):
        r = await linker.get(f"/v1/messages/{m}/data-points", params=params, headers=bearer(admin_token))
        assert r.status_code == 400, params
    r = await linker.get(
        "/v1/features/f/data-points", params={"workspace_id": "acme", "limit": 200}, headers=bearer(admin_token)
    )
    assert len(r.json()["items"]) == 7


async def test_503_with_retry_after_when_the_broker_cannot_confirm(
    linker: Client, seed: Seed, admin_token: str, jetstream: Any
) -> None:
    """No stream takes the subject (a broker that cannot store it): nothing was accepted, the
    client is told to retry."""
    m = await seed.message("acme", "fathom", "884120457", {"recording_url": SHARE})
    await jetstream.delete_stream(DATAPOINTS)
    r = await linker.post(f"/v1/messages/{m}/data-points", json={"data_points": [point()]}, headers=bearer(admin_token))
    assert (r.status_code, r.json()["error"]) == (503, "broker_unavailable")
    assert int(r.headers["retry-after"]) > 0
