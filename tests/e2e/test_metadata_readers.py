"""#22 items 1 and 5 end to end: a pulled Gong call (fake Gong, through the gateway's pull) and a
signed Fathom webhook become messages whose ``message_metadata`` and ``ai_insights`` a reader written
against the documented shapes (shared/DESIGN.md § Message metadata) decodes unchanged, strictly
typed; their external participants become contacts and internal people do not. Then #22's "Done
when" as one flow: both messages linked to a feature over HTTP, a data point with evidence on each,
and the feature's endpoints answer them with moment links (Fathom ``?timestamp=``; Gong's plain
link, ``moment_unverified``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes import serve_in_process
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

from .conftest import Stack, eventually, fathom_meeting, signed_headers

CALLS = 4


# --- the reader: what a consumer written against the documented shapes declares -----------------


class _Reader(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class Account(_Reader):
    object_id: str | None
    domain: str | None
    name: str | None
    industry: str | None
    website: str | None
    all_fields: dict[str, Any]


class Deal(_Reader):
    object_id: str | None
    name: str | None
    amount: float | None  # a number, never a string
    stage: str | None
    close_date: str | None
    probability: float | None
    all_fields: dict[str, Any]


class CrmContact(_Reader):
    object_id: str | None
    name: str | None
    email: str | None
    title: str | None
    all_fields: dict[str, Any]


class HubspotContext(_Reader):
    accounts: list[Account]
    deals: list[Deal]
    contacts: list[CrmContact]


class Talker(_Reader):
    name: str | None
    email: str | None
    affiliation: str
    seconds: float


class TalkShare(Talker):
    share: float


class Monologue(Talker):
    start: float


class TalkTime(_Reader):
    total_seconds: float
    participants: list[TalkShare]
    internal_share: float
    external_share: float
    unknown_share: float
    longest_monologue: Monologue | None


class GongMetadata(_Reader):
    call_id: str
    title: str | None
    scheduled: str | None
    started: str | None
    duration_seconds: float | None
    participants: list[str]  # names
    participant_details: list[dict[str, Any]]
    has_transcript: bool
    hubspot_context: HubspotContext
    url: str | None
    talk_time: TalkTime | None
    interaction_stats: dict[str, Any] | None


class FathomMetadata(_Reader):
    session_id: int
    title: str | None
    recording_url: str | None
    url: str | None
    user_email: str | None
    user_name: str | None
    duration_seconds: int | None
    created_at: str | None
    tags: list[str]
    has_transcript: bool
    summary: str | None
    action_items: list[dict[str, Any]]
    invitees: list[dict[str, Any]]
    page_url: None
    device_type: None
    browser: None
    os: None
    rage_clicks: int
    error_clicks: int
    dead_clicks: int
    frustrated_gestures: int
    events_count: int
    talk_time: TalkTime | None


class ActionItem(_Reader):
    text: str
    assignee: str | None
    t: float | None


class AiInsights(_Reader):
    summary: str | None
    key_points: list[str]
    action_items: list[ActionItem]
    topics: list[str]
    outcome: str | None


# --- the test -----------------------------------------------------------------------------------------


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS": "400", "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "1"}


async def _message_ids(conn: asyncpg.Connection, workspace: str, source: str) -> list[str]:
    return [
        str(r["id"])
        for r in await conn.fetch("select id from messages where workspace_id = $1 and source = $2", workspace, source)
    ]


async def test_a_reader_of_the_documented_shapes_consumes_both_sources(stack: Stack) -> None:
    gong = GongState(GongConfig(seed=22, calls=CALLS, span_days=30))
    conn = await asyncpg.connect(stack.env["CALLSTREAM_DATABASE_URL"])
    try:
        async with serve_in_process(gong_app(gong)) as gong_url:
            r = await stack.client("gateway").post(
                "/v1/integrations",
                json={
                    "workspace_id": "readers",
                    "provider": "gong",
                    "credentials": {"access_key": "gong-access-key", "access_key_secret": "gong-access-secret"},
                    "base_url": gong_url,
                },
            )
            assert r.status_code == 201, r.text
            integration_id, secret = await stack.fathom_integration("readers")
            meeting = fathom_meeting(722001)
            body = json.dumps(meeting).encode()
            accepted = await stack.client("gateway").post(
                f"/v1/webhooks/fathom/{integration_id}",
                content=body,
                headers=signed_headers(secret, body, "msg_readers_" + uuid.uuid4().hex),
            )
            assert accepted.status_code == 202, accepted.text

            async def all_stored():
                g = await _message_ids(conn, "readers", "gong")
                f = await _message_ids(conn, "readers", "fathom")
                return (g, f) if len(g) == CALLS and len(f) == 1 else None

            gong_ids, fathom_ids = await eventually(all_stored, timeout=90, interval=1.0)

        linker = stack.client("linker")
        with_crm = 0
        gong_calls: dict[str, GongMetadata] = {}
        for message_id in gong_ids:
            served = (await linker.get(f"/v1/messages/{message_id}")).json()
            metadata = gong_calls[message_id] = msgspec.convert(served["message_metadata"], GongMetadata)
            assert metadata.participants
            assert all(isinstance(name, str) for name in metadata.participants)
            assert metadata.url is not None
            assert ".app.gong.io/call?id=" in metadata.url
            if metadata.hubspot_context.accounts:
                with_crm += 1
                assert metadata.hubspot_context.accounts[0].domain
                assert all(isinstance(d.amount, (int, float)) for d in metadata.hubspot_context.deals)
            if metadata.has_transcript:
                assert metadata.talk_time is not None
                assert abs(sum(p.share for p in metadata.talk_time.participants) - 1) < 0.01
            insights = await conn.fetchval("select ai_insights::text from messages where id = $1::uuid", message_id)
            if insights is not None:  # null only for a call marked private
                ai = msgspec.json.decode(insights, type=AiInsights)
                assert ai.action_items
                assert ai.summary
        assert with_crm > 0

        served = (await linker.get(f"/v1/messages/{fathom_ids[0]}")).json()
        fathom = msgspec.convert(served["message_metadata"], FathomMetadata)
        assert fathom.recording_url == meeting["share_url"]
        assert (fathom.user_name, fathom.user_email) == (
            meeting["recorded_by"]["name"],
            meeting["recorded_by"]["email"],
        )
        assert fathom.talk_time is not None
        ai = msgspec.json.decode(
            await conn.fetchval("select ai_insights::text from messages where id = $1::uuid", fathom_ids[0]),
            type=AiInsights,
        )
        assert [a.text for a in ai.action_items] == [a["description"] for a in meeting["action_items"]]

        # contacts: the external people of both, one per email; internal people are not contacts
        emails = {r["email"] for r in await conn.fetch("select email from contacts where workspace_id = 'readers'")}
        external_invitees = {i["email"].lower() for i in meeting["calendar_invitees"] if i["is_external"]}
        assert external_invitees <= emails
        assert meeting["recorded_by"]["email"].lower() not in emails
        assert not [e for e in emails if e.endswith("@quillfern.example")]  # the fake Gong's own company

        await _feature_with_data_points(linker, fathom_ids[0], meeting["share_url"], *next(iter(gong_calls.items())))
    finally:
        await conn.close()


async def _feature_with_data_points(
    linker: httpx.AsyncClient, fathom_id: str, share_url: str, gong_id: str, gong: GongMetadata
) -> None:
    """A feature link made over HTTP (by id, and by provider identity) and two data points with
    evidence come back from the feature's endpoints, each pointing at its moment."""
    put = await linker.put(f"/v1/features/renewal/messages/{fathom_id}", json={"feature_name": "Renewal"})
    assert put.status_code == 202, put.text
    put = await linker.put(
        f"/v1/features/renewal/messages/by-external/gong/{gong.call_id}", params={"workspace_id": "readers"}
    )
    assert put.status_code == 202, put.text
    extractor = {"name": "renewal-signals", "version": "2.0"}
    evidence = {
        fathom_id: {"t": 478.25, "quote": "about twelve hundred a month"},
        gong_id: {"t": 25, "quote": "40 seats"},
    }
    for message_id, key in ((fathom_id, "mrr"), (gong_id, "seats")):
        body = {
            "key": key,
            "category": "revenue",
            "integer_value": 40,
            "feature_id": "renewal",
            "evidence": evidence[message_id],
            "extractor": extractor,
        }
        posted = await linker.post(f"/v1/messages/{message_id}/data-points", json={"data_points": [body]})
        assert posted.status_code == 202, posted.text

    async def linked() -> list[dict[str, Any]] | None:
        r = await linker.get("/features/renewal/messages", params={"workspace_id": "readers"})
        return r.json() if r.status_code == 200 and len(r.json()) == 2 else None

    messages = {m["id"]: m for m in await eventually(linked)}
    assert set(messages) == {fathom_id, gong_id}
    assert messages[fathom_id]["link"]["url"] == share_url
    assert messages[gong_id]["link"]["url"] == gong.url
    assert all(m["content"] for m in messages.values())  # the seed's path keeps the transcripts
    v1 = await linker.get("/v1/features/renewal/messages", params={"workspace_id": "readers", "include": "content"})
    assert {m["id"]: m for m in v1.json()} == messages

    async def points() -> list[dict[str, Any]] | None:
        r = await linker.get("/v1/features/renewal/data-points", params={"workspace_id": "readers"})
        return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) == 2 else None

    items = {p["message_id"]: p for p in await eventually(points)}
    assert {m: p["evidence"] for m, p in items.items()} == evidence
    fathom_link, gong_link = items[fathom_id]["link"], items[gong_id]["link"]
    assert (fathom_link["url"], fathom_link["moment"]) == (f"{share_url}?timestamp=478.25", True)
    assert (gong_link["url"], gong_link["moment"], gong_link["reason"]) == (gong.url, False, "moment_unverified")
    assert (items[gong_id]["source"], items[gong_id]["external_id"]) == ("gong", gong.call_id)
