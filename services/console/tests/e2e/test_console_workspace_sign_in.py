"""Sign-in with a workspace's ``manage`` API token (#18 item 3): the console calls the gateway,
scheduler and linker with that token, so every answer is scoped to its workspaces by the services
themselves; what only the operator may see (dead letters, services' readiness) says so."""

from __future__ import annotations

from typing import Any

import httpx
from console_stack import ConsoleStack, csrf_of


async def _admin(stack: ConsoleStack, method: str, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {stack.env['CALLSTREAM_CONSOLE_GATEWAY_TOKEN']}"}
    async with httpx.AsyncClient(base_url=stack.procs["gateway"].url, headers=headers, timeout=10.0) as gw:
        answer = await gw.request(method, path, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _sign_in(stack: ConsoleStack, token: str) -> tuple[httpx.AsyncClient, httpx.Response]:
    client = httpx.AsyncClient(base_url=stack.url, timeout=15.0)
    page = await client.get("/login")
    answer = await client.post("/login", data={"token": token, "_csrf_token": csrf_of(page.text), "next": "/"})
    return client, answer


async def test_a_manage_token_sees_its_workspaces_only(console_stack: ConsoleStack) -> None:
    made = {}
    for ws in ("ws-a", "ws-b"):
        body = {"workspace_id": ws, "provider": "fathom", "credentials": {"api_key": f"key-{ws}"}}
        made[ws] = (
            await _admin(console_stack, "POST", "/v1/integrations", {**body, "base_url": console_stack.fathom_url})
        )["id"]
    manage_a = (
        await _admin(
            console_stack, "POST", "/v1/tokens", {"workspace_ids": ["ws-a"], "name": "a", "scopes": ["manage"]}
        )
    )["token"]
    read_a = (await _admin(console_stack, "POST", "/v1/tokens", {"workspace_ids": ["ws-a"], "name": "r"}))["token"]

    # A read-only token cannot sign in, and says why.
    refused, answer = await _sign_in(console_stack, read_a)
    assert answer.headers["location"].startswith("/login")
    assert "manage scope" in (await refused.get("/login")).text
    await refused.aclose()

    client, answer = await _sign_in(console_stack, manage_a)
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text
    assert all(manage_a not in (c.value or "") for c in client.cookies.jar)  # encrypted in the cookie
    listed = (await client.get("/integrations")).text
    assert '<span class="muted who">a workspace&#39;s token</span>' in listed
    assert f"/integrations/{made['ws-a']}" in listed
    assert f"/integrations/{made['ws-b']}" not in listed
    assert "ws-b" not in listed
    overview = await client.get("/")
    assert overview.status_code == 200
    assert made["ws-b"] not in overview.text
    assert "all 1 →" in overview.text  # counts its own one integration, not ws-b's
    assert "shown to the console&#39;s operator" in overview.text or "shown to the console's operator" in overview.text

    own = await client.get(f"/integrations/{made['ws-a']}")
    assert own.status_code == 200
    assert "credentials valid" in own.text or "Run history" in own.text
    other = await client.get(f"/integrations/{made['ws-b']}")
    assert other.status_code == 404
    assert "Not found" in other.text
    # Nor can it act on it: the scheduler refuses, the console says so.
    start = await client.post(
        f"/integrations/{made['ws-b']}/syncs", data={"_csrf_token": csrf_of(own.text), "preset": "test"}
    )
    assert start.status_code == 303
    assert "404" in (await client.get(f"/integrations/{made['ws-a']}")).text

    dlq = await client.get("/dlq")
    assert dlq.status_code == 200
    assert "Dead letters are the operator" in dlq.text

    messages = await client.get("/messages")
    assert messages.status_code == 200
    for path in ("/", "/integrations", f"/integrations/{made['ws-a']}", "/dlq", "/messages"):
        assert manage_a not in (await client.get(path)).text
    await client.aclose()
