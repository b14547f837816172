"""The console over HTTP against the real services (each its own process) and the fake Fathom: sign
in, add a Fathom integration, its first scheduled run, "Test sync (latest 5)" streamed through the
console to its finish, the messages with their links, a message, the DLQ page, disable, sign out.
No page ever shows the API key, and a form without its CSRF token is refused."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from console_stack import ConsoleStack, csrf_of, eventually, signed_in_client

API_KEY = "fathom-test-key"


async def _events(response: httpx.Response) -> Any:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            if name:
                fields[name] = value.removeprefix(" ")
        elif "event" in fields:
            yield fields["event"], json.loads(fields.get("data", "null"))
            fields = {}
        else:
            fields = {}


async def test_an_operator_adds_fathom_test_syncs_and_reads_the_messages(console_stack: ConsoleStack) -> None:
    anonymous = httpx.AsyncClient(base_url=console_stack.url, timeout=10.0)
    first = await anonymous.get("/integrations", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (303, "/login?next=%2Fintegrations")
    login = await anonymous.get("/login")
    assert 'name="token"' in login.text
    assert '<label for="token">' in login.text
    wrong = await anonymous.post("/login", data={"token": "x" * 40, "_csrf_token": csrf_of(login.text)})
    assert wrong.status_code == 303
    assert wrong.headers["location"].startswith("/login")
    assert (await anonymous.get("/", follow_redirects=False)).status_code == 303
    await anonymous.aclose()

    client = await signed_in_client(console_stack)
    cookie = next(c for c in client.cookies.jar if c.name == "callstream_console")
    assert cookie.has_nonstandard_attr("HttpOnly")
    overview = await client.get("/")
    assert overview.status_code == 200
    assert "No integrations yet" in overview.text
    assert overview.text.count('<span class="badge ok">ready</span>') == 4, overview.text

    # A form without its CSRF token is refused, and nothing is created.
    forged = await client.post("/integrations", data={"provider": "fathom", "workspace_id": "w", "api_key": "k"})
    assert forged.status_code == 403

    page = await client.get("/integrations")
    added = await client.post(
        "/integrations",
        data={
            "_csrf_token": csrf_of(page.text),
            "provider": "fathom",
            "workspace_id": "console",
            "api_key": API_KEY,
            "base_url": console_stack.fathom_url,
        },
    )
    assert added.status_code == 303, added.text
    path = added.headers["location"]
    assert re.fullmatch(r"/integrations/[0-9a-f-]{36}", path), path
    integration_id = path.rsplit("/", 1)[1]

    # The scheduler's first run of a new integration comes at once: the page shows it until it ends.
    async def settled() -> str | None:
        html = (await client.get(path)).text
        return html if "Run history" in html and "data-events=" not in html and "<tbody>" in html else None

    html = await eventually(settled, timeout=30)
    assert API_KEY not in html
    assert "✓" in html
    assert "credentials valid" in html

    console_stack.fathom.faults.delay_seconds = 0.6  # the run lasts long enough to be watched
    started = await client.post(path + "/syncs", data={"_csrf_token": csrf_of(html), "preset": "test"})
    assert (started.status_code, started.headers["location"]) == (303, path + "#run")
    running = (await client.get(path)).text
    found = re.search(r'data-events="([^"]+)"', running)
    assert found, "the page shows no live run"
    async with client.stream("GET", found.group(1), timeout=httpx.Timeout(10.0, read=30.0)) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen = [event async for event in _events(stream)]
    console_stack.fathom.faults.delay_seconds = 0.0
    kind, final = seen[-1]
    assert (kind, final["status"], final["calls_published"], final["error"]) == ("finished", "success", 5, None)
    done = (await client.get(path)).text
    assert '<span class="badge ok">finished</span>' in done
    assert "latest 5" in done or "latest</td>" in done or "latest 5 " in done
    # what the normalizer made of the five: all stored (its stream ended once they were)
    assert '<dd data-field="calls_stored">5</dd>' in done

    async def listed() -> str | None:
        answer = (await client.get("/messages", params={"workspace_id": "console"})).text
        return answer if answer.count('target="_blank" rel="noopener noreferrer"') >= 5 else None

    messages = await eventually(listed, timeout=20)
    assert "Open in Fathom" in messages
    assert re.search(
        r'href="https://fathom\.video/share/[0-9a-f]+" target="_blank" rel="noopener noreferrer"', messages
    )
    # One integration's messages (its workspace picked from it), each with the call's length.
    assert f'href="/messages?integration_id={integration_id}"' in done
    own = await client.get("/messages", params={"integration_id": integration_id, "source": "fathom"})
    assert own.status_code == 200
    rows = own.text.count('target="_blank" rel="noopener noreferrer"')
    assert rows >= 5
    assert len(re.findall(r'<span title="\d+ s">\d+ (?:h|min|s)[^<]*</span>', own.text)) == rows
    other = await client.get("/messages", params={"integration_id": integration_id, "source": "gong"})
    assert "No messages match these filters" in other.text
    bad = await client.get("/messages", params={"integration_id": "x"})
    assert bad.status_code == 400
    assert "is not an integration" in bad.text
    message_path = re.search(r'href="(/messages/[0-9a-f-]{36})"', messages)
    assert message_path
    message = await client.get(message_path.group(1))
    assert message.status_code == 200
    assert "Transcript" in message.text
    assert "Participants" in message.text

    dlq = await client.get("/dlq")
    assert dlq.status_code == 200
    assert "Dead letters" in dlq.text

    disabled = await client.post(path + "/disable", data={"_csrf_token": csrf_of(done)})
    assert disabled.status_code == 303
    after = (await client.get(path)).text
    assert '<span class="badge off"' in after
    assert ">disabled<" in after

    # Erase, with its job followed until every service is done (issue #19, section 2).
    erased = await client.post(path + "/erase", data={"_csrf_token": csrf_of(after)})
    assert erased.status_code == 303
    job_path = erased.headers["location"]
    assert re.fullmatch(r"/erasures/[0-9a-f-]{36}", job_path)

    async def erasure_done() -> str | None:
        page = (await client.get(job_path)).text
        return page if '<h1>Erasure <span class="badge ok">done</span>' in page else None

    job_page = await eventually(erasure_done, timeout=60)
    assert "messages" in job_page
    assert 'http-equiv="refresh"' not in job_page  # a finished job's page stops refreshing
    after = (await client.get(path)).text
    assert ">erased<" in after
    assert "Erase everything of this integration" not in after
    assert "Open in Fathom" not in (await client.get("/messages")).text

    for page_path in ("/", "/integrations", path, "/messages", "/dlq"):
        assert API_KEY not in (await client.get(page_path)).text
        assert console_stack.env["CALLSTREAM_CONSOLE_GATEWAY_TOKEN"] not in (await client.get(page_path)).text

    out = await client.post("/logout", data={"_csrf_token": csrf_of(after)})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert (await client.get("/", follow_redirects=False)).status_code == 303
    await client.aclose()
    assert integration_id
