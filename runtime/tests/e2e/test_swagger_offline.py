"""Every service's ``/schema/swagger`` renders with no internet access: Chromium opens the page of a
``create_app`` service (the one wiring all four services and the console share) with every request
to another host refused, and the rendered Swagger UI shows the API's title and its operations. The
page must not even try another host (a CDN, a validator badge, a favicon)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from callstream.devstack import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "swagger browser test: no Chromium on this machine (Debian/Ubuntu: apt-get install -y chromium)",
        allow_module_level=True,
    )

from playwright.async_api import Route, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.e2e

APP = """
import sys
from litestar import get
from callstream.runtime import create_app, serve_asgi

@get("/v1/calls/{call_id:str}", sync_to_thread=False)
def call(call_id: str) -> dict[str, str]:
    '''One call, by its id.'''
    return {"id": call_id}

async def ready() -> None:
    return None

app = create_app(service="offline", title="Offline Swagger check", route_handlers=[call], checks={"db": ready})
serve_asgi(app, "127.0.0.1", int(sys.argv[1]), server="uvicorn", shutdown_seconds=2)
"""


@pytest.fixture
def service_url() -> object:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", APP, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the service exited at start"
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_page_names_only_its_own_assets(service_url: str) -> None:
    page = httpx.get(service_url + "/schema/swagger")
    assert page.status_code == 200
    assert "http://" not in page.text.replace(service_url, "")
    assert "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png"):
        served = httpx.get(f"{service_url}/schema/assets/{asset}")
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset


async def test_swagger_renders_without_internet(service_url: str) -> None:
    elsewhere: list[str] = []

    async def only_this_host(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(service_url).netloc:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
        try:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await page.route("**/*", only_this_host)
            await page.goto(service_url + "/schema/swagger")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Offline Swagger check")
            await expect(page.locator(".opblock-summary-path", has_text="/v1/calls/{call_id}")).to_be_visible()
        finally:
            await browser.close()
    assert elsewhere == []
