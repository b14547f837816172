"""The console's routes in process, its backends answered by ``httpx.MockTransport`` (the real
services are in ../e2e and ../browser): sign-in, CSRF, what is never rendered, and how a page says a
service is down."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from callstream.console import Settings, build_app
from callstream.console._backend import Backend

TOKEN = "o" * 40
GATEWAY_TOKEN = "cs_gateway_admin_" + "g" * 40
INTEGRATION = "5b1e8c1e-4c1a-4a43-9d59-0d4d1f3b8a11"
RUN = "0d6c1ad4-5f0c-4d0e-9a1a-2a9a7f0b3c11"
VIEW = {
    "id": INTEGRATION, "workspace_id": "acme", "provider": "gong", "status": "active", "auth_kind": "api_key",
    "base_url": None, "webhook_url": None, "has_webhook_secret": False, "webhook_registered": False,
    "last_error": None, "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z", "disabled_at": None,
}  # fmt: skip
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')

Handler = Callable[[httpx.Request], httpx.Response]


def backends(seen: list[httpx.Request], overrides: dict[str, Handler] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        key = f"{request.method} {request.url.path}"
        if overrides and key in overrides:
            return overrides[key](request)
        path = request.url.path
        gateway = request.url.port == 8080  # the gateway (its default address)
        if gateway and path.startswith("/v1/") and request.headers.get("authorization") != f"Bearer {GATEWAY_TOKEN}":
            return httpx.Response(401, json={"error": "unauthorized", "detail": "unknown token"})
        if path == "/v1/integrations" and request.method == "GET":
            return httpx.Response(200, json=[VIEW])
        if path == "/v1/integrations" and request.method == "POST":
            return httpx.Response(201, json={**VIEW, "webhook_url": None})
        if path == f"/v1/integrations/{INTEGRATION}":
            return httpx.Response(200, json=VIEW)
        if path == "/v1/sync-state":
            return httpx.Response(200, json=[])
        if path == "/v1/sync-summary":
            return httpx.Response(200, json={"counts": [], "attention": [], "attention_total": 0})
        if path == "/health/ready":
            return httpx.Response(200, json={"status": "ready", "checks": {"database": "ok"}})
        if path == "/metrics":
            return httpx.Response(200, text='callstream_dlq_messages{subject="dlq.normalizer"} 3.0\n')
        if path.endswith("/syncs") and request.method == "POST":
            return httpx.Response(202, json={"run_id": RUN})
        return httpx.Response(404, json={"error": "not_found", "detail": "nothing here"})

    return handle


def settings(**extra: Any) -> Settings:
    return Settings(
        CALLSTREAM_CONSOLE_ADMIN_TOKEN=TOKEN,  # type: ignore[call-arg]
        CALLSTREAM_CONSOLE_GATEWAY_TOKEN=SecretStr(GATEWAY_TOKEN),
        **extra,
    )


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
def overrides() -> dict[str, Handler]:
    return {}


@pytest.fixture
async def client(seen: list[httpx.Request], overrides: dict[str, Handler]) -> AsyncIterator[AsyncTestClient[Any]]:
    config = settings()
    app = build_app(config, backend=Backend(config, transport=httpx.MockTransport(backends(seen, overrides))))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def sign_in(client: AsyncTestClient[Any], token: str = TOKEN, next_path: str = "/") -> httpx.Response:
    page = await client.get("/login")
    found = CSRF.search(page.text)
    assert found
    return await client.post(
        "/login", data={"token": token, "_csrf_token": found.group(1), "next": next_path}, follow_redirects=False
    )


def csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found
    return found.group(1)


async def test_every_page_needs_a_session_and_the_token_opens_one(client: AsyncTestClient[Any]) -> None:
    for path in ("/", "/integrations", f"/integrations/{INTEGRATION}", "/dlq", "/messages"):
        answer = await client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/static/console.css")).status_code == 200

    refused = await sign_in(client, token="x" * 40)
    assert refused.headers["location"].startswith("/login")
    assert (await client.get("/", follow_redirects=False)).status_code == 303

    accepted = await sign_in(client, next_path="/dlq")
    assert (accepted.status_code, accepted.headers["location"]) == (303, "/dlq")
    cookie = next(h for h in accepted.headers.get_list("set-cookie") if h.startswith("callstream_console="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie or "samesite=lax" in cookie.lower()
    overview = await client.get("/")
    assert overview.status_code == 200
    assert "DLQ 3" in overview.text


async def test_a_form_without_its_csrf_token_is_refused(
    client: AsyncTestClient[Any], seen: list[httpx.Request]
) -> None:
    await sign_in(client)
    for path in (
        "/integrations",
        f"/integrations/{INTEGRATION}/syncs",
        f"/integrations/{INTEGRATION}/disable",
        "/logout",
    ):
        answer = await client.post(path, data={"preset": "test", "provider": "fathom"}, follow_redirects=False)
        assert answer.status_code == 403, path
    assert not [r for r in seen if r.method != "GET"]


async def test_secrets_are_sent_to_the_services_and_never_rendered(
    client: AsyncTestClient[Any], seen: list[httpx.Request]
) -> None:
    await sign_in(client)
    page = await client.get("/integrations")
    added = await client.post(
        "/integrations",
        data={
            "_csrf_token": csrf(page.text),
            "provider": "gong",
            "workspace_id": "acme",
            "access_key": "AK-visible-to-gong-only",
            "access_key_secret": "SECRET-never-shown",
        },
        follow_redirects=False,
    )
    assert (added.status_code, added.headers["location"]) == (303, f"/integrations/{INTEGRATION}")
    created = next(r for r in seen if r.method == "POST")
    assert created.headers["authorization"] == f"Bearer {GATEWAY_TOKEN}"
    assert b"SECRET-never-shown" in created.content
    for path in ("/", "/integrations", f"/integrations/{INTEGRATION}", "/dlq", "/messages"):
        html = (await client.get(path)).text
        for secret in ("SECRET-never-shown", GATEWAY_TOKEN, TOKEN):
            assert secret not in html, (path, secret)


async def test_a_sync_button_posts_its_preset_and_comes_back_with_303(
    client: AsyncTestClient[Any], seen: list[httpx.Request]
) -> None:
    await sign_in(client)
    page = await client.get(f"/integrations/{INTEGRATION}")
    assert "Test sync (latest 5)" in page.text
    assert "Quick sync (30 days)" in page.text
    answer = await client.post(
        f"/integrations/{INTEGRATION}/syncs",
        data={"_csrf_token": csrf(page.text), "preset": "test"},
        follow_redirects=False,
    )
    assert (answer.status_code, answer.headers["location"]) == (303, f"/integrations/{INTEGRATION}#run")
    posted = next(r for r in seen if r.method == "POST")
    assert posted.url.path == f"/v1/integrations/{INTEGRATION}/syncs"
    assert posted.content == b'{"mode":"latest","limit":5}'
    assert "Sync started." in (await client.get(f"/integrations/{INTEGRATION}")).text


async def test_a_page_says_which_service_is_down_and_what_to_do(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    overrides["GET /v1/integrations"] = unreachable
    overrides["GET /v1/sync-summary"] = unreachable
    await sign_in(client)
    page = await client.get("/")
    assert page.status_code == 200
    assert "The scheduler could not be reached" in page.text
    # Counts unknown is neither "all clear" nor "no integrations" (review: both were said).
    assert "all clear" not in page.text
    assert "No integrations yet" not in page.text
    assert "cannot be told" in page.text
    detail = await client.get("/integrations")
    assert detail.status_code == 502
    assert "./dev status" in detail.text
    # The gateway answers, the scheduler does not: the list says so instead of "not synced yet" alone.
    del overrides["GET /v1/integrations"]
    overrides["GET /v1/sync-state"] = unreachable
    listed = await client.get("/integrations")
    assert listed.status_code == 200
    assert "Sync states are missing: The scheduler could not be reached" in listed.text


async def test_the_progress_stream_is_passed_through(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    body = b'event: finished\nid: end\ndata: {"status":"success","pages":1,"calls_published":5}\n\n'
    overrides[f"GET /v1/integrations/{INTEGRATION}/syncs/{RUN}/events"] = lambda request: httpx.Response(
        200 if request.headers.get("last-event-id") != "end" else 204,
        content=body if request.headers.get("last-event-id") != "end" else b"",
        headers={"content-type": "text/event-stream"},
    )
    await sign_in(client)
    events = f"/integrations/{INTEGRATION}/runs/{RUN}/events"
    answer = await client.get(events)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.content == body
    assert (await client.get(events, headers={"Last-Event-ID": "end"})).status_code == 204


async def test_a_message_deleted_at_its_provider_is_gone_not_a_failure(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    message = "9a3c4b1e-0000-4000-8000-000000000001"
    overrides[f"GET /v1/messages/{message}"] = lambda _: httpx.Response(
        410, json={"error": "gone_provider_deleted", "detail": "deleted at its provider"}
    )
    await sign_in(client)
    page = await client.get(f"/messages/{message}")
    assert page.status_code == 410
    assert "Gone" in page.text
    assert "deleted at its provider" in page.text
    assert (await client.get("/messages/not-a-uuid")).status_code == 404


async def test_the_overview_names_a_service_not_ready_and_its_failing_check(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    overrides["GET /health/ready"] = lambda request: (
        httpx.Response(
            503, json={"status": "not_ready", "checks": {"database": "ok", "workers": "relay: TimeoutError"}}
        )
        if request.url.port == 8082
        else httpx.Response(200, json={"status": "ready", "checks": {"database": "ok"}})
    )
    await sign_in(client)
    page = (await client.get("/")).text
    assert "not ready</span> <strong>normalizer</strong>" in page
    assert "workers: relay: TimeoutError" in page
    assert "all clear" not in page


async def test_dead_letters_show_the_error_first_and_redrive_after_a_confirmation(
    client: AsyncTestClient[Any], overrides: dict[str, Handler], seen: list[httpx.Request]
) -> None:
    letter = {
        "dlq_seq": 7, "consumer": "normalizer", "subject": "calls.raw.fathom.x", "stream_sequence": 12,
        "delivery_count": 5, "failed_at": "2026-12-02T10:00:00Z", "error": "ValidationError: bad started_at",
        "bytes": 20, "payload": {"recording_id": 1},
    }  # fmt: skip
    overrides["GET /v1/dlq"] = lambda _: httpx.Response(200, json={"items": [letter]})
    overrides["POST /v1/dlq/7/redrive"] = lambda _: httpx.Response(202, json={"redriven": 7})
    await sign_in(client)
    page = (await client.get("/dlq")).text
    assert page.index("ValidationError: bad started_at") < page.index("<summary>Payload</summary>")
    assert "&#34;recording_id&#34;: 1" in page or '"recording_id": 1' in page
    assert "<summary>Redrive…</summary>" in page
    answer = await client.post("/dlq/7/redrive", data={"_csrf_token": csrf(page)}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dlq")
    assert any(r.method == "POST" and r.url.path == "/v1/dlq/7/redrive" for r in seen)
    assert "Dead letter 7 sent again" in (await client.get("/dlq")).text


async def test_redrive_all_after_a_confirmation_goes_up_to_the_newest_shown_and_says_how_many(
    client: AsyncTestClient[Any], overrides: dict[str, Handler], seen: list[httpx.Request]
) -> None:
    letters = [
        {
            "dlq_seq": seq, "consumer": "normalizer", "subject": "calls.raw.fathom.x", "stream_sequence": seq,
            "delivery_count": 5, "failed_at": "2026-12-02T10:00:00Z", "error": "ValidationError", "bytes": 20,
            "payload": "{}",
        }
        for seq in (9, 8)
    ]  # fmt: skip
    answers = iter(
        [
            {"redriven": 2, "failed": 0, "remaining": 0, "up_to": 9, "failures": []},
            {"redriven": 100, "failed": 2, "remaining": 40, "up_to": 9, "failures": [
                {"dlq_seq": 3, "error": "no_bytes"}, {"dlq_seq": 120, "error": "broker_unavailable"}]},
        ]
    )  # fmt: skip
    overrides["GET /v1/dlq"] = lambda _: httpx.Response(200, json={"items": letters, "total": 2})
    overrides["POST /v1/dlq/redrive"] = lambda _: httpx.Response(200, json=next(answers))
    await sign_in(client)
    page = (await client.get("/dlq")).text
    assert '<span class="badge warn">2</span>' in page  # the list's count, not the lagging gauge's 3
    assert "<summary>Redrive all…</summary>" in page
    assert '<input type="hidden" name="up_to" value="9">' in page
    answer = await client.post("/dlq/redrive", data={"_csrf_token": csrf(page), "up_to": "9"}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dlq")
    sent = [r for r in seen if r.method == "POST"]
    assert [(r.url.path, dict(r.url.params)) for r in sent] == [("/v1/dlq/redrive", {"up_to": "9"})]
    assert "Redrive all: 2 dead letters sent again to their subject." in (await client.get("/dlq")).text

    await client.post("/dlq/redrive", data={"_csrf_token": csrf(page), "up_to": "9"}, follow_redirects=False)
    shown = (await client.get("/dlq")).text
    assert 'class="flash bad"' in shown
    assert "1 recorded without their bytes cannot be and stay" in shown
    assert "the broker did not take one" in shown
    assert "40 more to go: redrive all again" in shown
    # Without its CSRF token nothing is sent.
    seen.clear()
    assert (await client.post("/dlq/redrive", data={"up_to": "9"}, follow_redirects=False)).status_code == 403
    assert not [r for r in seen if r.method == "POST"]


async def test_a_normalizer_that_cannot_list_its_dead_letters_is_named_with_what_to_do(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    overrides["GET /v1/dlq"] = lambda _: httpx.Response(503, json={"error": "broker_unavailable", "detail": "later"})
    overrides["POST /v1/dlq/redrive"] = lambda _: httpx.Response(503, json={"error": "broker_unavailable"})
    await sign_in(client)
    page = (await client.get("/dlq")).text
    assert "The normalizer answered 503 broker_unavailable: later" in page
    assert "No dead letters" not in page
    assert "Redrive all" not in page
    overrides["POST /v1/dlq/redrive"] = lambda _: httpx.Response(
        503, json={"error": "broker_unavailable", "detail": "the broker took no publish"}
    )
    sent = await client.post("/dlq/redrive", data={"_csrf_token": csrf(page)}, follow_redirects=False)
    assert (sent.status_code, sent.headers["location"]) == (303, "/dlq")
    # The list answers again: the redrive's failure can only be on the page as its flash.
    overrides["GET /v1/dlq"] = lambda _: httpx.Response(200, json={"items": [], "next_cursor": None})
    after = (await client.get("/dlq")).text
    assert "The normalizer answered 503 broker_unavailable: the broker took no publish" in after


MANAGE = "cs_ws_manage_" + "m" * 40


async def test_a_manage_sign_in_calls_the_services_with_its_own_token(
    client: AsyncTestClient[Any], seen: list[httpx.Request], overrides: dict[str, Handler]
) -> None:
    def integrations(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") in (f"Bearer {MANAGE}", f"Bearer {GATEWAY_TOKEN}"):
            return httpx.Response(200, json=[VIEW])
        return httpx.Response(401, json={"error": "unauthorized", "detail": "unknown token"})

    overrides["GET /v1/integrations"] = integrations
    signed = await sign_in(client, token=MANAGE)
    assert (signed.status_code, signed.headers["location"]) == (303, "/")
    seen.clear()
    overview = await client.get("/")
    assert overview.status_code == 200
    assert "shown to the console" in overview.text
    dlq = await client.get("/dlq")
    assert "Dead letters are the operator" in dlq.text
    assert seen, "no service was called"
    for request in seen:
        assert request.url.port != 8082, f"a manage sign-in called the normalizer: {request.url}"
        assert request.url.path != "/health/ready"
        assert request.headers["authorization"] == f"Bearer {MANAGE}", request.url
    for page in (overview.text, dlq.text):
        assert MANAGE not in page


async def test_a_read_token_cannot_sign_in(client: AsyncTestClient[Any], overrides: dict[str, Handler]) -> None:
    overrides["GET /v1/integrations"] = lambda _: httpx.Response(
        403, json={"error": "insufficient_scope", "detail": "this token may read, not manage"}
    )
    refused = await sign_in(client, token=MANAGE)
    assert refused.headers["location"].startswith("/login")
    assert "manage scope" in (await client.get("/login")).text
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_the_integrations_list_filters_by_workspace_provider_and_status(
    client: AsyncTestClient[Any], seen: list[httpx.Request], overrides: dict[str, Handler]
) -> None:
    disabled = {**VIEW, "id": "7c1e8c1e-4c1a-4a43-9d59-0d4d1f3b8a22", "provider": "fathom", "status": "disabled"}
    elsewhere = {**VIEW, "id": "8d1e8c1e-4c1a-4a43-9d59-0d4d1f3b8a33", "workspace_id": "globex"}

    def gateway(request: httpx.Request) -> httpx.Response:  # the gateway filters (and pages) its list
        asked = request.url.params
        fields = ("workspace_id", "provider", "status")
        return httpx.Response(
            200, json=[i for i in (VIEW, disabled, elsewhere) if all(i[f] == asked.get(f, i[f]) for f in fields)]
        )

    def scheduler(request: httpx.Request) -> httpx.Response:  # pages states by the word's filters
        asked = request.url.params
        states = [
            {"integration_id": i["id"], "workspace_id": i["workspace_id"], "provider": i["provider"],
             "integration_status": i["status"], "status": "pending", "created_at": i["created_at"],
             "last_synced_at": None, "next_due_at": None, "consecutive_failures": 0, "last_error": None}
            for i in (VIEW, disabled, elsewhere)
        ]  # fmt: skip
        wanted = {
            "status": asked.get_list("status"),
            "integration_status": asked.get_list("integration_status"),
            "provider": asked.get_list("provider"),
            "workspace_id": asked.get_list("workspace_id"),
            "integration_id": asked.get_list("integration_id"),
        }
        key = {"integration_id": "integration_id"}
        return httpx.Response(
            200,
            json=[st for st in states if all(not want or st[key.get(f, f)] in want for f, want in wanted.items())],
        )

    overrides["GET /v1/integrations"] = gateway
    overrides["GET /v1/sync-state"] = scheduler
    await sign_in(client)

    def listed(page: str) -> set[str]:
        return set(re.findall(r'href="/integrations/([0-9a-f-]{36})"', page))

    every = (await client.get("/integrations")).text
    assert listed(every) == {INTEGRATION, disabled["id"], elsewhere["id"]}
    assert '<label for="pv">Provider</label>' in every
    assert '<label for="st">Status</label>' in every
    assert "Clear filters" not in every
    cases = [
        ({"provider": "fathom"}, {disabled["id"]}),
        ({"provider": "gong", "workspace_id": "acme"}, {INTEGRATION}),
        ({"status": "disabled"}, {disabled["id"]}),
        ({"status": "not synced yet", "provider": "gong"}, {INTEGRATION, elsewhere["id"]}),
    ]
    for params, wanted in cases:
        seen.clear()
        page = (await client.get("/integrations", params=params)).text
        assert listed(page) == wanted, params
        assert "Clear filters" in page
        # Never the whole list: a page of the gateway's, or (a word the sync state decides) of the
        # scheduler's states so filtered.
        assert all(r.url.params.get("limit") == "50" for r in seen if r.url.path == "/v1/integrations"), params
    seen.clear()
    await client.get("/integrations", params={"status": "needs reconnect"})
    [paged] = [r for r in seen if r.url.path == "/v1/sync-state"]
    assert paged.url.params.get_list("status") == ["reauth_required", "error"]
    assert paged.url.params.get_list("integration_status") == ["active", "reauth_required"]
    assert paged.url.params["limit"] == "50"
    assert not [r for r in seen if r.url.path == "/v1/integrations"]
    none = (await client.get("/integrations", params={"status": "failing"})).text
    assert listed(none) == set()
    assert "No integration matches these filters." in none


async def test_the_integrations_list_is_a_page_of_the_gateways_and_older_follows_it(
    client: AsyncTestClient[Any], seen: list[httpx.Request], overrides: dict[str, Handler]
) -> None:
    """bench/console: reading every integration and every sync state made a list of a thousand wait
    for ~900 KB of JSON. A page is the gateway's (its Link rel="next") and the states of its rows."""
    following = "/v1/integrations?limit=50&provider=gong&cursor=NEXT-PAGE"

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "NEXT-PAGE":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json=[VIEW], headers={"Link": f'<{following}>; rel="next"'})

    overrides["GET /v1/integrations"] = gateway
    await sign_in(client)
    seen.clear()
    first = await client.get("/integrations", params={"provider": "gong"})
    assert first.status_code == 200, first.text
    asked = [r for r in seen if r.url.path == "/v1/integrations"]
    assert [dict(r.url.params) for r in asked] == [{"limit": "50", "provider": "gong"}]
    states = [r for r in seen if r.url.path == "/v1/sync-state"]
    assert [r.url.params.get_list("integration_id") for r in states] == [[INTEGRATION]]
    older = re.search(r'<a href="([^"]+)" rel="next">Older', first.text)
    assert older
    assert parse_qs(urlsplit(unescape(older.group(1))).query) == {"provider": ["gong"], "cursor": ["NEXT-PAGE"]}
    seen.clear()
    second = await client.get(unescape(older.group(1)))
    assert second.status_code == 200
    assert [dict(r.url.params) for r in seen if r.url.path == "/v1/integrations"] == [
        {"limit": "50", "provider": "gong", "cursor": "NEXT-PAGE"}
    ]
    assert "Older" not in second.text
    assert "Newest" in second.text

    for params, words in (({"provider": "zoom"}, "provider 'zoom'"), ({"status": "great"}, "status 'great'")):
        seen.clear()
        refused = await client.get("/integrations", params=params)
        assert refused.status_code == 400
        assert words in unescape(refused.text)
        assert not [r for r in seen if r.url.path.startswith("/v1/")]
    overrides["GET /v1/integrations"] = lambda _: httpx.Response(
        400, json={"error": "invalid_cursor", "detail": "not a cursor of this list"}
    )
    bad = await client.get("/integrations", params={"cursor": "garbage"})
    assert bad.status_code == 400
    assert "not a cursor of this list" in bad.text


def _state(key: str, status: str, integration_status: str = "active") -> dict[str, Any]:
    return {
        "integration_id": key, "workspace_id": "acme", "provider": "gong", "integration_status": integration_status,
        "status": status, "created_at": "2026-12-01T10:00:00Z", "last_synced_at": None, "next_due_at": None,
        "consecutive_failures": 1 if status == "error" else 0, "last_error": "HTTP 503" if status == "error" else None,
    }  # fmt: skip


async def test_a_status_the_sync_state_decides_pages_the_schedulers_states(
    client: AsyncTestClient[Any], seen: list[httpx.Request], overrides: dict[str, Handler]
) -> None:
    """`needs reconnect` reads failing states too (a refused credential is one): a page whose every row
    kept another word is skipped, not shown empty; Older follows the scheduler's Link; health that
    cannot be read is said (review)."""
    failing = [f"00000000-0000-4000-8000-{k:012d}" for k in range(3)]
    refused = "00000000-0000-4000-8000-000000000099"
    pages = {
        None: ([_state(k, "error") for k in failing], "P2"),
        "P2": ([_state(refused, "reauth_required", "reauth_required")], "P3"),
        "P3": ([], None),
    }

    def scheduler(request: httpx.Request) -> httpx.Response:
        states, following = pages[request.url.params.get("cursor")]
        link = {"Link": f'</v1/sync-state?status=error&limit=50&cursor={following}>; rel="next"'} if following else {}
        return httpx.Response(200, json=states, headers=link)

    healthy = {"checks": [{"name": "credentials_valid", "ok": True, "reason": "fine"}]}
    overrides["GET /v1/sync-state"] = scheduler
    overrides["GET /v1/health"] = lambda r: httpx.Response(
        200, json={"items": [{"integration_id": i, **healthy} for i in r.url.params.get_list("integration_id")]}
    )
    await sign_in(client)
    seen.clear()
    page = await client.get("/integrations", params={"status": "needs reconnect"})
    assert page.status_code == 200, page.text
    listed = set(re.findall(r'href="/integrations/([0-9a-f-]{36})"', page.text))
    assert listed == {refused}  # the first page's failing ones were not refused: skipped
    asked = [r.url.params.get("cursor") for r in seen if r.url.path == "/v1/sync-state"]
    assert asked == [None, "P2"]
    older = re.search(r'<a href="([^"]+)" rel="next">Older', page.text)
    assert older
    assert parse_qs(urlsplit(unescape(older.group(1))).query) == {"status": ["needs reconnect"], "cursor": ["P3"]}

    failing_page = await client.get("/integrations", params={"status": "failing"})
    assert set(re.findall(r'href="/integrations/([0-9a-f-]{36})"', failing_page.text)) == set(failing)
    overrides["GET /v1/health"] = lambda _: httpx.Response(503, json={"error": "unavailable", "detail": "later"})
    overrides[f"GET /v1/integrations/{failing[0]}/health"] = lambda _: httpx.Response(503, json={"error": "x"})
    unjudged = await client.get("/integrations", params={"status": "failing"})
    assert "The health of 3 integration(s) could not be read" in unescape(unjudged.text)


async def test_a_workspace_sign_in_whose_states_fail_is_never_all_clear(
    client: AsyncTestClient[Any], overrides: dict[str, Handler]
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    overrides["GET /v1/integrations"] = lambda _: httpx.Response(200, json=[VIEW])
    overrides["GET /v1/sync-state"] = unreachable
    await sign_in(client, token=MANAGE)
    page = await client.get("/")
    assert page.status_code == 200
    assert "Sync states are missing" in page.text
    assert "all clear" not in page.text
    assert "cannot be told" in page.text
