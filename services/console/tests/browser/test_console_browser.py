"""The console in a real browser: Playwright drives the OS's Chromium (``apt-get install chromium``;
Playwright's own browser download is never used) against the console and the four services as
processes, with the fake Fathom. Sign in with the keyboard, the overview's empty state, add a Fathom
integration, "Test sync (latest 5)" with its progress live until it finishes, the messages and
their links, a message, an integration whose key the provider refuses (its health card red with
the reason, the overview asking for a person), the DLQ page, "Connect Fathom" through the fake's
OAuth, a workspace's token refused another workspace's integration, a form stripped of its CSRF
token refused, dead letters redriven one by one and all at once, an erasure followed, sign out. A
screenshot of each page is saved under the test's tmp dir (or ``CONSOLE_SCREENSHOTS_DIR``)."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

from callstream.contracts import (
    CALLS_RAW,
    DLQ,
    NORMALIZER_CONSUMER,
    DeadLetter,
    RawCall,
    dlq_subject,
    raw_calls_subject,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "console browser tests: no Chromium on this machine (Debian/Ubuntu: apt-get install -y chromium)",
        allow_module_level=True,
    )

from console_stack import ConsoleStack, eventually  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.e2e
API_KEY = "fathom-test-key"


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def _manage_token(stack: ConsoleStack, workspace_id: str) -> str:
    headers = {"Authorization": f"Bearer {stack.env['CALLSTREAM_CONSOLE_GATEWAY_TOKEN']}"}
    async with httpx.AsyncClient(base_url=stack.procs["gateway"].url, headers=headers, timeout=10.0) as gateway:
        answer = await gateway.post(
            "/v1/tokens", json={"workspace_ids": [workspace_id], "name": "browser", "scopes": ["manage"]}
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


async def _another_workspaces_integration(browser: Browser, stack: ConsoleStack, token: str, url: str) -> None:
    """A workspace's manage token, signed in from a browser of its own, gets the console's 404 page
    for an integration of another workspace."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = await context.new_page()
        answer = await page.goto(url)  # to the sign-in, which comes back here
        assert page.url.startswith(stack.url + "/login")
        async with page.expect_navigation(url=url) as back:
            await page.get_by_label("Token", exact=True).fill(token)
            await page.get_by_label("Token", exact=True).press("Enter")
        answer = await back.value
        assert answer is not None
        assert answer.status == 404
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        await expect(page.locator(".who")).to_contain_text("workspace")
        assert token not in await page.content()
    finally:
        await context.close()


def _dlq_count(js: Any, wanted: int) -> Any:
    async def probe() -> bool:
        return bool((await js.stream_info(DLQ)).state.messages >= wanted)

    return probe


def _poison(integration_id: str) -> bytes:
    """A raw call the normalizer cannot map (a recording id that is no number): a dead letter."""
    return msgspec.json.encode(
        RawCall(
            event_id="browser-poison", source="fathom", workspace_id="browser", integration_id=integration_id,
            external_id="poison", origin="webhook", received_at=datetime.now(UTC),
            payload=msgspec.Raw(b'{"recording_id": "not a number", "title": "poison"}'),
        )
    )  # fmt: skip


def _fixed(raw: bytes, title: str) -> bytes:
    """A dead letter whose cause is gone (as after a fix was deployed): a good raw call, retitled."""
    call = msgspec.json.decode(raw, type=RawCall)
    meeting = msgspec.json.decode(call.payload)
    meeting.update(recording_id=990_001, title=title)
    good = msgspec.structs.replace(
        call, event_id="browser-fixed", external_id="990001", payload=msgspec.Raw(msgspec.json.encode(meeting))
    )
    return msgspec.json.encode(
        DeadLetter(
            consumer=NORMALIZER_CONSUMER.durable, subject=raw_calls_subject("fathom", call.integration_id),
            stream_sequence=0, headers={}, data=msgspec.json.encode(good), error="TimeoutError: fixed since",
            delivery_count=5, failed_at=datetime.now(UTC),
        )
    )  # fmt: skip


async def test_an_operator_in_chromium(console_stack: ConsoleStack, screens: Path, nats_url: str) -> None:
    stack = console_stack
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(15_000)

            # Any page sends a stranger to the sign-in, which is done with the keyboard alone.
            await page.goto(stack.url + "/integrations")
            assert page.url.startswith(stack.url + "/login")
            await _shot(page, screens, "01-login")
            token = page.get_by_label("Token", exact=True)
            await expect(token).to_be_focused()
            await token.fill(stack.token)
            await token.press("Enter")
            await page.wait_for_url(stack.url + "/integrations")

            await page.goto(stack.url + "/")
            await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            await expect(page.get_by_text("No integrations yet.")).to_be_visible()
            await _shot(page, screens, "02-overview-empty")

            await page.get_by_role("link", name="Integrations").first.click()
            await _shot(page, screens, "03-integrations-empty")
            fathom = page.locator("form", has=page.get_by_role("heading", name="Fathom", exact=True))
            await fathom.get_by_label("Workspace id").fill("browser")
            await fathom.get_by_label("API key").fill(API_KEY)
            await fathom.get_by_text("Advanced").click()
            await fathom.get_by_label("API base URL").fill(stack.fathom_url)
            await fathom.get_by_role("button", name="Add Fathom").click()
            await page.wait_for_url(re.compile(r".*/integrations/[0-9a-f-]{36}$"))
            await expect(page.get_by_role("status")).to_contain_text("Fathom integration added")
            integration_url = page.url

            # The first scheduled run starts at once; the sync buttons come back when it ends.
            test_sync = page.get_by_role("button", name="Test sync (latest 5)")
            history = page.locator("section", has=page.locator("#history-h")).locator("tbody tr")
            for _ in range(60):
                idle = await test_sync.is_enabled() and await page.locator(".live[data-events]").count() == 0
                if idle and await history.count() >= 1:
                    break
                await page.wait_for_timeout(500)
                await page.goto(integration_url)
            await expect(test_sync).to_be_enabled()
            await expect(page.locator("#health-h")).to_be_visible()

            # Slow the fake down so that the run is seen live, then start it.
            stack.fathom.faults.delay_seconds = 0.6
            await test_sync.click()
            await page.wait_for_url(integration_url + "#run")
            live = page.locator(".live")
            await expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
            await expect(live.locator('[data-field="calls_published"]')).not_to_have_text("0", timeout=20_000)
            await _shot(page, screens, "04-integration-running")
            # The stream's finish reloads the page: the latest run is finished with its 5 calls.
            await expect(live.locator('[data-field="status"]')).to_have_text("finished", timeout=30_000)
            await page.wait_for_load_state("load")
            await expect(page.locator(".live:not([data-events])")).to_be_visible(timeout=10_000)
            await expect(live.locator('[data-field="calls_published"]')).to_have_text("5")
            stack.fathom.faults.delay_seconds = 0.0
            await expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
            await _shot(page, screens, "05-integration-finished")
            assert API_KEY not in await page.content()

            await page.get_by_role("link", name="Messages", exact=True).click()
            await page.get_by_label("Workspace").fill("browser")
            await page.get_by_role("button", name="Filter").click()
            opens = page.get_by_role("link", name=re.compile("Open in Fathom"))
            await expect(opens.first).to_be_visible()
            assert await opens.count() >= 5
            for i in range(5):
                link = opens.nth(i)
                assert re.fullmatch(r"https://fathom\.video/share/[0-9a-f]+", await link.get_attribute("href") or "")
                assert await link.get_attribute("target") == "_blank"
                assert await link.get_attribute("rel") == "noopener noreferrer"
            await _shot(page, screens, "06-messages")

            await page.locator("tbody tr td a").first.click()
            await expect(page.get_by_role("heading", name="Transcript")).to_be_visible()
            await _shot(page, screens, "07-message")

            # An API key the provider refuses (the fake answers 401): the health card says so in red,
            # and the overview puts it under what needs a person.
            await page.goto(stack.url + "/integrations")
            await fathom.get_by_label("Workspace id").fill("revoked")
            await fathom.get_by_label("API key").fill("revoked-api-key")
            await fathom.get_by_text("Advanced").click()
            await fathom.get_by_label("API base URL").fill(stack.fathom_url)
            await fathom.get_by_role("button", name="Add Fathom").click()
            await page.wait_for_url(re.compile(r".*/integrations/[0-9a-f-]{36}$"))
            refused = page.locator(".checks li.bad", has_text="credentials valid")
            for _ in range(60):
                if await refused.count():
                    break
                await page.wait_for_timeout(500)
                await page.reload()
            await expect(refused).to_contain_text("401")
            await expect(page.locator("h1 .badge")).to_have_text("needs reconnect")
            refused_url = page.url
            await _shot(page, screens, "08-integration-refused")

            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
            await expect(page.locator(".alerts")).to_contain_text("needs reconnect")
            await _shot(page, screens, "09-overview")
            # Its count of a word opens the list so filtered (the scheduler's states of that word).
            await (
                page.get_by_role("list", name="Integrations by status")
                .get_by_role("link", name=re.compile("needs reconnect"))
                .click()
            )
            await expect(page.get_by_label("Status")).to_have_value("needs reconnect")
            await expect(page.locator("tbody tr")).to_have_count(1)
            await expect(page.locator("tbody")).to_contain_text("revoked")

            # The list's filters, by their labels: the refused one picked out by its status, the same
            # word as on the overview.
            await page.goto(stack.url + "/integrations")
            await page.get_by_label("Status").select_option("needs reconnect")
            await page.get_by_role("button", name="Filter").click()
            await expect(page.locator("tbody tr")).to_have_count(1)
            await expect(page.locator("tbody")).to_contain_text("revoked")
            await _shot(page, screens, "14-integrations-filtered")

            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
            await expect(page.get_by_role("heading", name=re.compile("Dead letters"))).to_be_visible()
            await _shot(page, screens, "10-dlq")

            # "Connect Fathom": the browser goes through the gateway and the fake Fathom's OAuth
            # (the gateway's cookie binds it) and comes back to the new integration's page.
            await page.goto(stack.url + "/integrations")
            connect = page.locator("form", has=page.get_by_role("heading", name="Fathom account"))
            await connect.get_by_label("Workspace id").fill("oauth")
            await connect.get_by_role("button", name="Connect Fathom").click()
            await page.wait_for_url(re.compile(re.escape(stack.url) + r"/integrations/[0-9a-f-]{36}$"))
            await expect(page.get_by_role("status")).to_contain_text("Connected.")
            await expect(page.locator("h1")).to_contain_text("Fathom")
            await _shot(page, screens, "11-connected")
            # "Reconnect Fathom" on its page: the OAuth again, back on the same integration.
            connected_url = page.url
            await page.get_by_role("button", name="Reconnect Fathom").click()
            await page.wait_for_url(re.compile(re.escape(stack.url) + r"/integrations/[0-9a-f-]{36}$"))
            assert page.url == connected_url
            await expect(page.get_by_role("status")).to_contain_text("Connected.")

            # A workspace's token, signed in from a browser of its own, cannot open another
            # workspace's integration.
            await _another_workspaces_integration(
                browser, stack, await _manage_token(stack, "revoked"), integration_url
            )

            # A form stripped of its CSRF token is refused, and nothing changes.
            await page.goto(refused_url)
            await page.get_by_text("Disable this integration…").click()
            disable = page.locator('form[action$="/disable"]')
            await disable.locator('input[name="_csrf_token"]').evaluate("input => input.remove()")
            async with page.expect_navigation() as forged:
                await disable.get_by_role("button").click()
            assert (await forged.value).status == 403  # type: ignore[union-attr]
            await page.goto(refused_url)
            await expect(page.locator("h1 .badge")).to_have_text("needs reconnect")

            # Dead letters: a call the normalizer cannot map, and one whose cause is gone (a good
            # call, as after a fix), redriven from /dlq: the second stored, the first back again.
            nc = await nats.connect(nats_url)
            try:
                js = nc.jetstream()
                browser_id = integration_url.rsplit("/", 1)[1]
                subject = raw_calls_subject("fathom", browser_id)
                await js.publish(subject, _poison(browser_id))
                await eventually(_dlq_count(js, 1), timeout=30)
                await page.goto(stack.url + "/dlq")
                await expect(page.locator(".letters > li")).to_have_count(1)
                await expect(page.locator(".letters .error").first).to_contain_text("recording_id")
                await page.locator(".letters > li").get_by_text("Redrive…").click()  # its confirmation
                await _shot(page, screens, "12-dlq-dead-letter")
                model = await js.get_msg(CALLS_RAW, seq=1, next=True, subject=subject)  # one the run stored
                await js.publish(dlq_subject(NORMALIZER_CONSUMER.durable), _fixed(model.data or b"", "Redriven call"))
            finally:
                await nc.close()
            await page.reload()
            fixed = page.locator(".letters > li", has_text="fixed since")
            fixed_seq = (await fixed.locator("code.id").inner_text()).strip()
            await fixed.get_by_text("Redrive…").click()
            await fixed.get_by_role("button", name=f"Yes, redrive #{fixed_seq}").click()
            await page.wait_for_url(stack.url + "/dlq")
            await expect(page.get_by_role("status")).to_contain_text(f"Dead letter {fixed_seq} sent again")
            await expect(page.locator(".letters > li")).to_have_count(1)
            await expect(page.locator(".letters > li", has_text="fixed since")).to_have_count(0)
            poison_seq = (await page.locator(".letters code.id").first.inner_text()).strip()
            await page.get_by_text("Redrive all…").click()
            await page.get_by_role("button", name=f"Yes, redrive all up to #{poison_seq}").click()
            await page.wait_for_url(stack.url + "/dlq")
            await expect(page.get_by_role("status")).to_contain_text("Redrive all: 1 dead letter sent again")
            await expect(page.locator(f'.letters code.id:text-is("{poison_seq}")')).to_have_count(0)
            stored = page.get_by_role("link", name="Redriven call")
            for _ in range(40):
                await page.goto(stack.url + "/messages?workspace_id=browser")
                if await stored.count():
                    break
                await page.wait_for_timeout(250)
            await expect(stored).to_be_visible()

            # Erase an integration: the erasure's page follows it to its end.
            await page.goto(refused_url)
            await page.get_by_text("Erase everything of this integration…").click()
            await page.get_by_role("button", name=re.compile("Yes, erase")).click()
            await page.wait_for_url(re.compile(r".*/erasures/[0-9a-f-]{36}$"))
            await expect(page.get_by_role("status")).to_contain_text("Erasure started")
            for _ in range(80):  # the page refreshes itself every 3 s; quicker here
                if await page.locator("h1 .badge", has_text="done").count():
                    break
                await page.wait_for_timeout(200)
                await page.reload()
            await expect(page.locator("h1 .badge")).to_have_text("done")
            await _shot(page, screens, "13-erasure")

            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url(stack.url + "/login")
            await page.goto(stack.url + "/")
            assert page.url.startswith(stack.url + "/login")
        finally:
            await browser.close()
