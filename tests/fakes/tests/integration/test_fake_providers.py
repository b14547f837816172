"""The fakes over real HTTP, checked against what shared/providers/*.md documents."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, post
from standardwebhooks import Webhook

from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import NO_CALLS, GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

KEY = {"X-Api-Key": "fathom-test-key"}


async def test_fathom_pages_newest_first_until_next_cursor_is_null() -> None:
    state = FathomState(FathomConfig(meetings=25))
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url, headers=KEY) as http:
        seen, cursor, pages = [], None, 0
        while True:
            response = await http.get("/external/v1/meetings", params={"cursor": cursor} if cursor else None)
            assert response.status_code == 200
            assert response.headers["RateLimit-Limit"] == "60"
            body = response.json()
            assert body["limit"] == 10
            seen += [m["created_at"] for m in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert pages == 3
    assert len(seen) == 25
    assert seen == sorted(seen, reverse=True)


async def test_fathom_filters_repeated_keys_and_refuses_content_to_oauth_apps() -> None:
    state = FathomState(FathomConfig(meetings=40))
    domain = state.meeting(state.index.recording_ids[3])["calendar_invitees"][-1]["email_domain"]
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get(
            "/external/v1/meetings",
            headers=KEY,
            params=[("calendar_invitees_domains[]", domain), ("calendar_invitees_domains[]", "x.example")],
        )
        items = response.json()["items"]
        assert items
        assert all(any(i["email_domain"] == domain for i in m["calendar_invitees"]) for m in items)
        assert "transcript" not in items[0]  # not asked for, not sent
        tokens = state.issue_tokens("account-1")
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        refused = await http.get("/external/v1/meetings", headers=bearer, params={"include_transcript": "true"})
        assert refused.status_code == 400
        rid = state.index.recording_ids[0]
        transcript = await http.get(f"/external/v1/recordings/{rid}/transcript", headers=bearer)
        assert transcript.json()["transcript"] == state.meeting(rid)["transcript"]


async def test_fathom_heavy_limit_answers_429_with_retry_after() -> None:
    state = FathomState(FathomConfig(meetings=5, heavy_per_window=2, window_seconds=30))
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url, headers=KEY) as http:
        rid = state.index.recording_ids[0]
        statuses = [(await http.get(f"/external/v1/recordings/{rid}/summary")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        throttled = await http.get(f"/external/v1/recordings/{rid}/summary")
        assert 1 <= int(throttled.headers["Retry-After"]) <= 30
        assert (await http.get("/external/v1/meetings")).status_code == 200  # light requests still pass


async def test_fathom_oauth_refresh_tokens_are_single_use() -> None:
    state = FathomState(FathomConfig(meetings=1))
    cfg = state.config
    async with serve_in_process(fathom_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        form = {
            "grant_type": "authorization_code",
            "code": state.issue_code("account-1"),
            "client_id": cfg.oauth_client_id,
            "client_secret": cfg.oauth_client_secret,
        }
        tokens = (await http.post("/external/v1/oauth2/token", data=form)).json()
        again = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": cfg.oauth_client_id,
            "client_secret": cfg.oauth_client_secret,
        }
        assert (await http.post("/external/v1/oauth2/token", data=again)).status_code == 200
        reused = await http.post("/external/v1/oauth2/token", data=again)
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"


async def test_fathom_delivers_signed_webhooks_that_verify() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    @post("/hook", status_code=204)
    async def hook(request: Request[Any, Any, Any]) -> None:
        received.append((dict(request.headers), await request.body()))

    state = FathomState(FathomConfig(meetings=3))
    async with serve_in_process(Litestar([hook])) as sink, serve_in_process(fathom_app(state)) as url:
        async with httpx.AsyncClient(base_url=url, headers=KEY) as http:
            created = await http.post(
                "/external/v1/webhooks",
                json={
                    "destination_url": f"{sink}/hook",
                    "triggered_for": ["my_recordings"],
                    "include_transcript": True,
                },
            )
            assert created.status_code == 201
            secret = created.json()["secret"]
            assert secret.startswith("whsec_")
        [rid] = await state.add_meetings(1)
    [(headers, body)] = received
    Webhook(secret).verify(body, headers)  # raises if the signature is wrong
    meeting = msgspec.json.decode(body)
    assert meeting["recording_id"] == rid
    assert meeting["transcript"]
    assert "crm_matches" not in meeting


def _basic() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(b"gong-access-key:gong-access-secret").decode()}


async def test_gong_pages_by_cursor_and_says_no_calls_with_a_404() -> None:
    state = GongState(GongConfig(calls=150))
    state.faults.limits_enabled = False
    async with serve_in_process(gong_app(state)) as url, httpx.AsyncClient(base_url=url, headers=_basic()) as http:
        body = {"filter": {"fromDateTime": "2000-01-01T00:00:00Z", "toDateTime": "2100-01-01T00:00:00Z"}}
        first = (await http.post("/v2/calls/extensive", json=body)).json()
        assert first["records"]["currentPageSize"] == 100
        second = (await http.post("/v2/calls/extensive", json={**body, "cursor": first["records"]["cursor"]})).json()
        assert "cursor" not in second["records"]
        assert len(second["calls"]) == 50
        empty = await http.post(
            "/v2/calls/transcript",
            json={"filter": {"fromDateTime": "2001-01-01T00:00:00Z", "toDateTime": "2001-01-02T00:00:00Z"}},
        )
        assert empty.status_code == 404
        assert empty.json()["errors"] == [NO_CALLS]
        assert (await http.post("/v2/calls/extensive", json={"filter": {"callIds": []}})).status_code == 400
        state.faults.expire_next_cursor = 1
        expired = await http.post("/v2/calls/extensive", json={**body, "cursor": first["records"]["cursor"]})
        assert expired.status_code == 400
        assert "cursor has expired" in expired.json()["errors"]


async def test_gong_limits_per_second_and_refuses_bad_credentials() -> None:
    state = GongState(GongConfig(calls=5))
    async with serve_in_process(gong_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        bad = await http.get("/v2/calls", headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()})
        assert bad.status_code == 401
        statuses = [(await http.get("/v2/calls", headers=_basic())).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]


async def test_gong_oauth_returns_the_tenant_api_host_and_transcripts_can_be_late() -> None:
    state = GongState(GongConfig(calls=3))
    state.faults.limits_enabled = False
    cfg = state.config
    client = base64.b64encode(f"{cfg.oauth_client_id}:{cfg.oauth_client_secret}".encode()).decode()
    async with serve_in_process(gong_app(state)) as url, httpx.AsyncClient(base_url=url) as http:
        tokens = (
            await http.post(
                "/oauth2/generate-customer-token",
                headers={"Authorization": f"Basic {client}"},
                params={"grant_type": "authorization_code", "code": state.issue_code()},
            )
        ).json()
        assert tokens["api_base_url_for_customer"] == url
        [late] = state.add_calls(1, transcript_delay=60, started=datetime(2020, 1, 1, tzinfo=UTC))
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        response = await http.post(
            "/v2/calls/transcript", headers=bearer, json={"filter": {"callIds": [late, state.index.ids[-2]]}}
        )
        assert [t["callId"] for t in response.json()["callTranscripts"]] == [state.index.ids[-2]]


async def test_gong_private_calls_and_the_callids_a_request_asked_for_are_seen() -> None:
    state = GongState(GongConfig(calls=4))
    state.faults.limits_enabled = False
    async with serve_in_process(gong_app(state)) as url, httpx.AsyncClient(base_url=url, headers=_basic()) as http:
        added = await http.post("/_fake/calls", json={"count": 1, "private": True})
        [hidden] = added.json()["call_ids"]
        assert hidden in state.index.private
        body = {"filter": {"callIds": [hidden, state.index.ids[0]]}, "contentSelector": {}}
        calls = (await http.post("/v2/calls/extensive", json=body)).json()["calls"]
        assert {c["metaData"]["id"]: c["metaData"]["isPrivate"] for c in calls} == {
            hidden: True,
            state.index.ids[0]: False,
        }
    [served] = [e for e in state.log.api() if e.path == "/v2/calls/extensive"]
    assert served.body["callIds"] == [hidden, state.index.ids[0]]
