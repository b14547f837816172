"""What counts against a provider host's breaker: the host's failures, not one tenant's own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from callstream.gateway.pull import PullSettings, RunDeferred, RunFailed
from callstream.gateway.pull._breaker import Breaker
from callstream.gateway.pull._http import ProviderHttp
from callstream.gateway.pull._limits import AccountLimits

URL = "https://api.example/external/v1/meetings"


def _settings() -> PullSettings:
    values: dict[str, Any] = {"backoff_initial_seconds": 0.001, "backoff_max_seconds": 0.002, "retry_attempts": 3}
    return PullSettings(**{f"CALLSTREAM_GATEWAY_PULL_{k.upper()}": v for k, v in values.items()})


def _http(breaker: Breaker, fails_with: Any, account: str = "fathom:tenant-a") -> ProviderHttp:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(fails_with, int):
            return httpx.Response(fails_with)
        raise fails_with("boom", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ProviderHttp(
        client, AccountLimits(), _settings(), {"X-Api-Key": "k"}, "fathom", breaker=breaker, account=account
    )


def _breaker() -> Breaker:
    return Breaker("https://api.example", failures_to_open=2, open_seconds=30)


@pytest.mark.parametrize("error", [httpx.PoolTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError])
async def test_one_tenants_timeouts_and_local_errors_leave_the_host_closed(error: type[Exception]) -> None:
    breaker = _breaker()
    for _ in range(3):  # three runs of the same tenant, each with its retries
        with pytest.raises(RunDeferred):
            await _http(breaker, error).request("GET", URL)
    assert breaker.state == "closed"
    assert not breaker.suspect


async def test_a_request_that_cannot_be_sent_fails_the_run_not_the_host() -> None:
    breaker = _breaker()
    with pytest.raises(RunFailed):
        await _http(breaker, httpx.LocalProtocolError).request("GET", URL)
    assert breaker.state == "closed"
    assert not breaker.suspect


async def test_timeouts_of_two_accounts_count_against_the_host() -> None:
    breaker = _breaker()
    for account in ("fathom:tenant-a", "fathom:tenant-b"):
        with pytest.raises(RunDeferred):
            await _http(breaker, httpx.ReadTimeout, account).request("GET", URL)
    assert breaker.state == "open"


@pytest.mark.parametrize("fails_with", [httpx.ConnectError, httpx.ConnectTimeout, 503])
async def test_connect_errors_and_5xx_of_one_tenant_count(fails_with: Any) -> None:
    breaker = _breaker()
    with pytest.raises(RunDeferred):
        await _http(breaker, fails_with).request("GET", URL)
    assert breaker.suspect
    with pytest.raises(RunDeferred):
        await _http(breaker, fails_with).request("GET", URL)
    assert breaker.state == "open"
