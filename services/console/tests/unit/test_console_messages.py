"""The console's /messages in process, the linker and gateway answered by ``httpx.MockTransport``
(test_console_routes.py's way; the real services are in ../e2e): the filters as query parameters
passed through to the linker, the columns, keyset pages, and what an invalid filter shows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from callstream.console import Settings, build_app
from callstream.console._backend import Backend
from callstream.console._views import call_length

TOKEN = "o" * 40
INTEGRATION = "5b1e8c1e-4c1a-4a43-9d59-0d4d1f3b8a11"
OTHER = "77d0c7a4-13c5-4c55-8c7e-0c8f3e0b2a22"  # an integration of another workspace
CUSTOMER = "c0ffee00-1111-4222-8333-444455556666"
SHARE = "https://fathom.video/share/AbCdEf"
CURSOR = "WyIyMDI2LTEyLTAxVDEwOjAwOjAwWiIsIjEyMyJd"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def view(integration_id: str, workspace_id: str, provider: str) -> dict[str, Any]:
    return {
        "id": integration_id, "workspace_id": workspace_id, "provider": provider, "status": "active",
        "auth_kind": "api_key", "base_url": None, "webhook_url": None, "has_webhook_secret": False,
        "webhook_registered": False, "last_error": None, "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z", "disabled_at": None,
    }  # fmt: skip


def item(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"9a3c4b1e-0000-4000-8000-00000000000{n}", "workspace_id": "acme", "source": "fathom",
        "external_id": str(n), "title": f"Pilot call {n}", "sent_at": "2026-12-01T10:00:00Z", "channel_name": "fathom",
        "author": {"name": None, "email": None, "id": None}, "customer_id": None, "customer_name": None,
        "link": {"url": SHARE, "kind": "recording", "origin": "metadata.recording_url", "reason": None},
        "integration_id": INTEGRATION, "duration_seconds": None, **extra,
    }  # fmt: skip


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def linker_calls() -> list[httpx.Request]:
    return []


@pytest.fixture
def gateway_calls() -> list[httpx.Request]:
    return []


@pytest.fixture
def views() -> list[dict[str, Any]]:
    """The integrations the gateway lists (a test may change them)."""
    return [view(INTEGRATION, "acme", "fathom"), view(OTHER, "globex", "gong")]


@pytest.fixture
def answers() -> dict[str, Handler]:
    """What the linker's GET /v1/messages answers (a test may replace it)."""
    page = {
        "items": [
            item(1, customer_id=CUSTOMER, customer_name="Quillmere Systems", duration_seconds=2520),
            item(2, duration_seconds=None, link={"url": None, "kind": "none", "origin": None, "reason": "no_link"}),
        ],
        "next_cursor": CURSOR,
    }
    return {"messages": lambda _: httpx.Response(200, json=page)}


@pytest.fixture
async def client(
    linker_calls: list[httpx.Request],
    gateway_calls: list[httpx.Request],
    answers: dict[str, Handler],
    views: list[dict[str, Any]],
) -> AsyncIterator[AsyncTestClient[Any]]:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/v1/integrations"):
            gateway_calls.append(request)
            known = [v for v in views if path == f"/v1/integrations/{v['id']}"]
            if known:
                return httpx.Response(200, json=known[0])
        if path == "/v1/messages":
            linker_calls.append(request)
            return answers["messages"](request)
        if path.startswith("/v1/customers/"):
            linker_calls.append(request)
            return httpx.Response(200, json={"id": CUSTOMER, "name": "Asked Separately", "domain": "q.example"})
        return httpx.Response(404, json={"error": "not_found", "detail": "nothing here"})

    config = Settings(CALLSTREAM_CONSOLE_ADMIN_TOKEN=TOKEN)  # type: ignore[call-arg]
    app = build_app(config, backend=Backend(config, transport=httpx.MockTransport(handle)))
    async with AsyncTestClient(app) as test_client:
        login = await test_client.get("/login")
        found = CSRF.search(login.text)
        assert found
        signed = await test_client.post("/login", data={"token": TOKEN, "_csrf_token": found.group(1)})
        assert signed.status_code in (200, 303)
        yield test_client


def sent(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


def older_link(html: str) -> str:
    found = re.search(r'<a href="([^"]+)"[^>]*>Older', html)
    assert found, "no Older link"
    return unescape(found.group(1))


async def test_the_filters_pass_through_and_the_older_link_keeps_them(
    client: AsyncTestClient[Any], linker_calls: list[httpx.Request], gateway_calls: list[httpx.Request]
) -> None:
    filters = {"integration_id": INTEGRATION, "source": "fathom", "customer_id": CUSTOMER}
    page = await client.get("/messages", params=filters)
    assert page.status_code == 200, page.text
    # One keyset page of the linker's, filters as given (the linker scopes the workspaces).
    assert [sent(r) for r in linker_calls if r.url.path == "/v1/messages"] == [{**filters, "limit": "50"}]
    assert not [r for r in linker_calls if r.url.path.startswith("/v1/customers/")], "names come with the list"
    # The integration named is read by its id for the heading, never the gateway's whole list.
    assert [r.url.path for r in gateway_calls] == [f"/v1/integrations/{INTEGRATION}"]
    html = page.text
    assert f'<a href="/integrations/{INTEGRATION}">' in html
    for heading in ("Title", "Source", "Customer", "Started", "Duration"):
        assert f'<th scope="col">{heading}</th>' in html
    assert "Quillmere Systems" in html
    assert "42 min" in html
    assert f'href="{SHARE}" target="_blank" rel="noopener noreferrer"' in html
    # The filter form: a GET form, each field labelled, the values kept.
    for name, value in filters.items():
        field = re.search(rf'<(?:input|select)[^>]*\bid="([^"]+)"[^>]*\bname="{name}"', html)
        assert field, name
        assert f'<label for="{field.group(1)}">' in html, name
        assert value in html
    assert '<form method="get" action="/messages"' in html

    older = older_link(html)
    assert urlsplit(older).path == "/messages"
    carried = {**filters, "cursor": CURSOR}
    assert parse_qs(urlsplit(older).query) == {k: [v] for k, v in carried.items()}
    linker_calls.clear()
    following = await client.get(older)
    assert following.status_code == 200
    assert [sent(r) for r in linker_calls] == [{**filters, "cursor": CURSOR, "limit": "50"}]
    assert "Newest" in following.text


async def test_without_a_filter_one_page_of_every_workspace_and_older_follows(
    client: AsyncTestClient[Any], linker_calls: list[httpx.Request], gateway_calls: list[httpx.Request]
) -> None:
    html = (await client.get("/messages")).text
    # One request, whatever the number of workspaces (bench/console: it was one per workspace, up
    # to 20, merged, with no older page); the linker answers for every workspace the sign-in reads.
    assert [sent(r) for r in linker_calls] == [{"limit": "50"}]
    assert not gateway_calls
    assert "42 min" in html
    assert parse_qs(urlsplit(older_link(html)).query) == {"cursor": [CURSOR]}
    assert "Clear filters" not in html
    assert "Newest" not in html


async def test_with_nothing_stored_the_page_says_what_to_do(
    client: AsyncTestClient[Any], answers: dict[str, Handler], views: list[dict[str, Any]]
) -> None:
    answers["messages"] = lambda _: httpx.Response(200, json={"items": [], "next_cursor": None})
    views[:] = [view(INTEGRATION, "acme", "fathom")]
    assert "No messages yet." in (await client.get("/messages")).text
    assert "No messages match these filters" in (await client.get("/messages", params={"source": "gong"})).text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"integration_id": "not-an-id"}, "integration_id 'not-an-id' is not an integration's id (a uuid)."),
        ({"customer_id": "acme corp"}, "customer_id 'acme corp' is not a customer's id (a uuid)."),
        ({"source": "zoom"}, "source 'zoom' is not one of fathom, gong."),
    ],
)
async def test_an_invalid_filter_is_said_not_a_failure(
    client: AsyncTestClient[Any], linker_calls: list[httpx.Request], params: dict[str, str], words: str
) -> None:
    page = await client.get("/messages", params=params)
    assert page.status_code == 400
    assert words in unescape(page.text)
    assert '<form method="get" action="/messages"' in page.text  # to correct it right there
    assert not linker_calls


async def test_an_unknown_integration_and_a_linker_refusal_are_said(
    client: AsyncTestClient[Any], answers: dict[str, Handler]
) -> None:
    unknown = await client.get("/messages", params={"integration_id": "00000000-0000-4000-8000-000000000000"})
    assert unknown.status_code == 404
    assert "No integration 00000000-0000-4000-8000-000000000000" in unknown.text
    assert "Pilot call" not in unknown.text

    answers["messages"] = lambda _: httpx.Response(
        400, json={"error": "invalid_cursor", "detail": "cursor is not one this service issued"}
    )
    refused = await client.get("/messages", params={"workspace_id": "acme", "cursor": "garbage"})
    assert refused.status_code == 400
    assert "cursor is not one this service issued" in refused.text
    assert '<form method="get" action="/messages"' in refused.text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(2520, "42 min"), (1835, "31 min"), (45, "45 s"), (0, "0 s"), (3600, "1 h"), (3900, "1 h 5 min"),
     (150, "3 min"), (1890, "32 min"), (90, "2 min"),
     (None, ""), (-1, ""), (float("nan"), ""), ("60", ""), (True, "")],
)  # fmt: skip
def test_a_calls_length_as_people_say_it(seconds: object, said: str) -> None:
    assert call_length(seconds) == said
