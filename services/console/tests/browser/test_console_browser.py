"""The console in a real browser: Playwright drives the OS's Chromium (``apt-get install chromium``;
Playwright's own browser download is never used) against the console and the four services as
processes, with the fake Fathom. Sign in with the keyboard, the overview's empty state, add a Fathom
integration, "Test sync (latest 5)" with its progress live until it finishes, the messages and
their links, a message, an integration whose key the provider refuses (its health card red with
the reason, the overview asking for a person), the DLQ page, "Connect Fathom" through the fake's
OAuth, sign out. A screenshot of each page is saved under the test's
tmp dir (or ``CONSOLE_SCREENSHOTS_DIR``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "console browser tests: no Chromium on this machine (Debian/Ubuntu: apt-get install -y chromium)",
        allow_module_level=True,
    )

from console_stack import ConsoleStack  # noqa: E402
from playwright.async_api import Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.e2e
API_KEY = "fathom-test-key"


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def test_an_operator_in_chromium(console_stack: ConsoleStack, screens: Path) -> None:
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
            await page.select_option("#ws", "browser")
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
            await _shot(page, screens, "08-integration-refused")

            await page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
            await expect(page.locator(".alerts")).to_contain_text("needs reconnect")
            await _shot(page, screens, "09-overview")

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

            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url(stack.url + "/login")
            await page.goto(stack.url + "/")
            assert page.url.startswith(stack.url + "/login")
        finally:
            await browser.close()
