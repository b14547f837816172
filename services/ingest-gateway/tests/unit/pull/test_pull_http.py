"""The provider request policy, with provider HTTP mocked (httpx.MockTransport)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from callstream.gateway.pull import AuthFailed, PullSettings, RunDeferred
from callstream.gateway.pull._http import ProviderHttp, retry_after_seconds
from callstream.gateway.pull._limits import AccountLimits


def _settings(**values: Any) -> PullSettings:
    base: dict[str, Any] = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "retry_attempts": 4}
    base.update(values)
    aliased: dict[str, Any] = {f"CALLSTREAM_GATEWAY_PULL_{k.upper()}": v for k, v in base.items()}
    return PullSettings(**aliased)


def _http(answers: list[httpx.Response], seen: list[httpx.Request], **settings: Any) -> ProviderHttp:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ProviderHttp(client, AccountLimits(), _settings(**settings), {"X-Api-Key": "k"}, "fathom")


async def test_5xx_and_429_are_retried_until_an_answer() -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(503), httpx.Response(429), httpx.Response(200, json={"ok": True})], seen)
    response = await http.request("GET", "https://p.example/x")
    assert response.status_code == 200
    assert len(seen) == 3


async def test_retry_after_is_waited() -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(429, headers={"Retry-After": "0.3"}), httpx.Response(200)], seen)
    started = time.monotonic()
    await http.request("GET", "https://p.example/x")
    assert time.monotonic() - started >= 0.3


async def test_a_retry_after_beyond_the_limit_defers_the_run() -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(429, headers={"Retry-After": "3600"})], seen, max_retry_after_seconds=60)
    with pytest.raises(RunDeferred) as caught:
        await http.request("GET", "https://p.example/x")
    assert caught.value.delay == 3600
    assert len(seen) == 1


async def test_retries_run_out_into_a_deferred_run() -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(502)] * 4, seen)
    with pytest.raises(RunDeferred):
        await http.request("GET", "https://p.example/x")
    assert len(seen) == 4


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_end_the_run_without_retrying(status: int) -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(status)], seen)
    with pytest.raises(AuthFailed):
        await http.request("GET", "https://p.example/x")
    assert len(seen) == 1


async def test_401_asks_for_new_credentials_once() -> None:
    seen: list[httpx.Request] = []
    http = _http([httpx.Response(401), httpx.Response(200)], seen)

    async def reauthorize() -> dict[str, str]:
        return {"Authorization": "Bearer fresh"}

    http.reauthorize = reauthorize
    assert (await http.request("GET", "https://p.example/x")).status_code == 200
    assert seen[1].headers["authorization"] == "Bearer fresh"


async def test_timeouts_are_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    http = ProviderHttp(client, AccountLimits(), _settings(), {}, "gong")
    assert (await http.request("POST", "https://p.example/v2/calls/extensive")).status_code == 200
    assert calls == 2


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
