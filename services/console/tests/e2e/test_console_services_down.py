"""The console's pages with a service killed (real processes): each says which service failed and
what to do, and none passes a missing answer off as good news. The overview without the scheduler's
summary is never "all clear" nor "no integrations" (it said both); the list without sync states says
so beside its rows; a page that cannot be made at all is the error page naming the service."""

from __future__ import annotations

import asyncio
from html import unescape

from console_stack import ConsoleStack, csrf_of, signed_in_client


async def test_each_page_says_which_service_is_down(console_stack: ConsoleStack) -> None:
    client = await signed_in_client(console_stack)
    page = await client.get("/integrations")
    added = await client.post(
        "/integrations",
        data={
            "_csrf_token": csrf_of(page.text),
            "provider": "fathom",
            "workspace_id": "downs",
            "api_key": "fathom-down-key",
            "base_url": console_stack.fathom_url,
        },
    )
    assert added.status_code == 303, added.text
    integration_id = added.headers["location"].rsplit("/", 1)[-1]

    await asyncio.to_thread(console_stack.procs["scheduler"].stop)
    overview = await client.get("/")
    assert overview.status_code == 200
    text = unescape(overview.text)
    assert "The scheduler could not be reached" in text
    assert "cannot be told" in text
    assert "all clear" not in text
    assert "No integrations yet" not in text

    listed = await client.get("/integrations")
    assert listed.status_code == 200
    assert f"/integrations/{integration_id}" in listed.text  # the gateway's page still shows
    assert "Sync states are missing: The scheduler could not be reached" in unescape(listed.text)

    by_word = await client.get("/integrations", params={"status": "failing"})
    assert by_word.status_code == 502
    assert "The scheduler could not be reached" in unescape(by_word.text)

    await asyncio.to_thread(console_stack.procs["linker"].stop)
    messages = await client.get("/messages")
    assert messages.status_code == 502
    assert "The linker could not be reached" in unescape(messages.text)

    await asyncio.to_thread(console_stack.procs["gateway"].stop)
    gone = await client.get("/integrations")
    assert gone.status_code == 502
    assert "The gateway could not be reached" in unescape(gone.text)
    await client.aclose()
