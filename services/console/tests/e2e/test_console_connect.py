"""Connect sessions from the console (#18 item 3), over HTTP against the real services and the fake
Fathom's OAuth: "Connect Fathom" makes a connect session at the gateway that returns to the
console's /integrations/connected; the redirects are followed one by one with one cookie jar, as a
browser does (the gateway's browser cookie included)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from console_stack import ConsoleStack, csrf_of, signed_in_client


async def test_connect_fathom_by_oauth_ends_on_the_new_integration(console_stack: ConsoleStack) -> None:
    client = await signed_in_client(console_stack)
    page = await client.get("/integrations")
    assert "No integrations yet" in page.text
    assert '<label for="cf-ws">Workspace id</label>' in page.text
    assert ">Connect Fathom</button>" in page.text
    assert ">Connect Gong</button>" in page.text

    # A form without its CSRF token is refused.
    forged = await client.post("/integrations/connect", data={"provider": "fathom", "workspace_id": "oauth-ws"})
    assert forged.status_code == 403

    started = await client.post(
        "/integrations/connect",
        data={"_csrf_token": csrf_of(page.text), "provider": "fathom", "workspace_id": "oauth-ws"},
    )
    assert started.status_code == 303, started.text
    gateway = console_stack.procs["gateway"].url
    assert started.headers["location"].startswith(gateway + "/v1/connect/")

    # The browser: the gateway (sets its cookie) → the fake's authorize → the gateway's callback
    # (with that cookie) → the console's /integrations/connected → the integration's page.
    browser = client  # one cookie jar for every host, as a browser has
    location = started.headers["location"]
    hops: list[str] = []
    for _ in range(6):
        answer = await browser.get(location, follow_redirects=False)
        if answer.status_code not in (302, 303):
            break
        location = str(answer.url.join(answer.headers["location"]))
        hops.append(urlsplit(location).path)
    assert hops[0] == "/external/v1/oauth2/authorize", hops
    assert hops[1] == "/v1/oauth/fathom/callback", hops
    assert hops[2] == "/integrations/connected", hops
    assert re.fullmatch(r"/integrations/[0-9a-f-]{36}", hops[3]), hops
    assert answer.status_code == 200, answer.text
    assert "Connected." in answer.text
    assert "oauth-ws" in answer.text
    integration_id = hops[3].rsplit("/", 1)[1]

    listed = (await client.get("/integrations")).text
    assert f"/integrations/{integration_id}" in listed

    # "Reconnect Fathom" on its page: new tokens for the same integration, never a second one.
    own = (await client.get(f"/integrations/{integration_id}")).text
    assert ">Reconnect Fathom</button>" in own
    redo = await client.post(
        "/integrations/connect",
        data={
            "_csrf_token": csrf_of(own),
            "provider": "fathom",
            "workspace_id": "oauth-ws",
            "integration_id": integration_id,
        },
    )
    assert redo.status_code == 303, redo.text
    location, hops = redo.headers["location"], []
    for _ in range(6):
        answer = await browser.get(location, follow_redirects=False)
        if answer.status_code not in (302, 303):
            break
        location = str(answer.url.join(answer.headers["location"]))
        hops.append(urlsplit(location).path)
    assert hops[-1] == f"/integrations/{integration_id}", hops
    assert (await client.get("/integrations")).text.count('href="/integrations/') == listed.count(
        'href="/integrations/'
    )

    # The same link again: the gateway refuses it and the console says what to do.
    again = await browser.get(started.headers["location"], follow_redirects=False)
    assert again.status_code == 303
    back = await browser.get(again.headers["location"], follow_redirects=False)
    assert (back.status_code, back.headers["location"]) == (303, "/integrations#connect")
    shown = (await client.get("/integrations")).text
    assert "Connecting failed (session_used)" in shown
    assert "press connect again" in shown.lower()

    # An outcome the console does not know is still explained, and a forged id goes nowhere.
    odd = await client.get("/integrations/connected", params={"status": "error", "error": "weird"})
    assert odd.headers["location"] == "/integrations#connect"
    assert "Connecting failed (weird)" in (await client.get("/integrations")).text
    bad = await client.get("/integrations/connected", params={"status": "connected", "integration_id": "../x"})
    assert bad.headers["location"] == "/integrations#connect"

    # Gong has no OAuth app here: the console says so instead of failing.
    page = await client.get("/integrations")
    gong = await client.post(
        "/integrations/connect",
        data={"_csrf_token": csrf_of(page.text), "provider": "gong", "workspace_id": "oauth-ws"},
    )
    assert gong.headers["location"] == "/integrations#connect"
    assert "No OAuth app is configured" in (await client.get("/integrations")).text
    await client.aclose()
    assert isinstance(answer, httpx.Response)
