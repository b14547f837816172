"""Helpers of the console's tests (conftest.py makes fixtures of them): the console against the real services: the four service processes on this test's database and
streams, the console as its own process (as ``./dev up`` starts it), and a fake Fathom in the test's
event loop."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from callstream.devstack import CONSOLE_ADMIN_TOKEN_ENV, ServiceProcess, by_name, console_env
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app

BACKENDS = ("gateway", "normalizer", "linker", "scheduler")
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class ConsoleStack:
    url: str
    token: str
    fathom_url: str  # the fake's API base, as an integration's base_url
    fathom: FathomState
    procs: dict[str, ServiceProcess]
    env: dict[str, str]


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def eventually(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {timeout}s; last result {last!r}")


def _service_env(service_env: dict[str, str]) -> dict[str, str]:
    # The due loop and the progress reads quick; no pacing of the fake's requests.
    return {
        **service_env,
        "CALLSTREAM_SCHEDULER_LOOP_SECONDS": "0.5",
        "CALLSTREAM_SCHEDULER_PROGRESS_POLL_SECONDS": "0.1",
        "CALLSTREAM_GATEWAY_PULL_LIMITS_ENABLED": "false",
    }


async def _console_stack(
    service_env: dict[str, str], jetstream: object, start_service: Callable[..., ServiceProcess]
) -> AsyncIterator[ConsoleStack]:
    fathom = FathomState(FathomConfig(seed=84, meetings=12, span_days=10, page_size=5))
    async with serve_in_process(fathom_app(fathom)) as fathom_url:
        api = fathom_url + "/external/v1"
        # Connect sessions run the fake's OAuth and return to the console on loopback.
        oauth = {
            "CALLSTREAM_GATEWAY_FATHOM_CLIENT_ID": fathom.config.oauth_client_id,
            "CALLSTREAM_GATEWAY_FATHOM_CLIENT_SECRET": fathom.config.oauth_client_secret,
            "CALLSTREAM_GATEWAY_FATHOM_AUTHORIZE_URL": api + "/oauth2/authorize",
            "CALLSTREAM_GATEWAY_FATHOM_TOKEN_URL": api + "/oauth2/token",
            "CALLSTREAM_GATEWAY_FATHOM_API_URL": api,
            "CALLSTREAM_GATEWAY_RETURN_URL_ALLOW": "http://127.0.0.1",
        }
        backend_env = {**service_env, **oauth}
        procs = {name: start_service(name, backend_env, wait=False) for name in BACKENDS}
        token = "cs_console_admin_" + secrets.token_urlsafe(32)
        urls = {by_name(name).url_env: proc.url for name, proc in procs.items()}
        env = {**console_env({**service_env, **urls}), CONSOLE_ADMIN_TOKEN_ENV: token}
        procs["console"] = start_service("console", env, wait=False)
        for proc in procs.values():
            await asyncio.to_thread(proc.wait_ready)
        yield ConsoleStack(procs["console"].url, token, api, fathom, procs, env)


async def signed_in_client(stack: ConsoleStack) -> httpx.AsyncClient:
    """A client with the console's session and CSRF cookies (it signed in through /login)."""
    client = httpx.AsyncClient(base_url=stack.url, timeout=15.0)
    page = await client.get("/login")
    answer = await client.post("/login", data={"token": stack.token, "_csrf_token": csrf_of(page.text), "next": "/"})
    assert (answer.status_code, answer.headers.get("location")) == (303, "/"), answer.text
    return client
