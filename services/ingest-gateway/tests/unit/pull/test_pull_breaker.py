"""The provider host breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from callstream.gateway.pull import AuthFailed, ProviderUnavailable, PullSettings
from callstream.gateway.pull._breaker import Breaker, BreakerRegistry, host_of
from callstream.gateway.pull._http import ProviderHttp
from callstream.gateway.pull._limits import AccountLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, host: str = "https://api.example") -> Breaker:
    return Breaker(
        host, failures_to_open=3, open_seconds=10, open_max_seconds=35, probe_timeout_seconds=20, clock=clock
    )


def _gauge(host: str) -> float | None:
    return REGISTRY.get_sample_value("callstream_gateway_pull_breaker_state", {"host": host})


def test_failures_in_a_row_open_it_and_a_success_between_resets_the_count() -> None:
    clock = Clock()
    b = _breaker(clock, "https://a.example")
    assert _gauge("https://a.example") == 0
    b.failed()
    b.failed()
    b.succeeded()  # the host answered: the two failures were not an outage
    b.failed()
    b.failed()
    assert b.state == "closed"
    assert b.check() is None
    b.failed()
    assert b.state == "open"
    assert _gauge("https://a.example") == 2
    assert b.check() == pytest.approx(10)
    clock.now += 4
    assert b.check() == pytest.approx(6)  # nothing goes while open; the caller learns for how long


def test_after_the_interval_one_probe_goes_and_the_others_wait_for_it() -> None:
    clock = Clock()
    b = _breaker(clock, "https://b.example")
    for _ in range(3):
        b.failed()
    clock.now += 10
    assert b.check() is None  # the probe
    assert b.state == "half_open"
    assert _gauge("https://b.example") == 1
    for _ in range(5):
        waited = b.check()
        assert waited is not None
        assert 1.0 <= waited <= 10  # the others are released while the probe is out
    b.succeeded()
    assert b.state == "closed"
    assert _gauge("https://b.example") == 0
    assert b.check() is None


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap() -> None:
    clock = Clock()
    b = _breaker(clock)
    for _ in range(3):
        b.failed()
    opened = []
    for _ in range(4):
        opened.append(b.open_until - clock.now)
        clock.now = b.open_until
        assert b.check() is None
        b.failed()
        assert b.state == "open"
    assert opened == [10, 20, 35, 35]
    clock.now = b.open_until
    assert b.check() is None
    b.succeeded()
    for _ in range(2):
        b.failed()
    assert b.state == "closed"  # a success starts the count afresh
    b.failed()
    assert b.open_until - clock.now == 10  # and the time open too


def test_a_lost_probe_is_replaced_after_its_timeout_and_a_released_one_at_once() -> None:
    clock = Clock()
    b = _breaker(clock)
    for _ in range(3):
        b.failed()
    clock.now += 10
    assert b.check() is None
    clock.now += 19
    assert b.check() is not None
    clock.now += 1
    assert b.check() is None  # the first probe never reported: this one goes
    assert b.check() is not None
    b.released()  # its run was released before sending
    assert b.check() is None


def test_a_host_is_suspect_from_its_first_failure_until_it_answers() -> None:
    clock = Clock()
    b = _breaker(clock)
    assert not b.suspect
    b.failed()
    assert b.suspect
    assert b.retry_in() == 0
    b.failed()
    b.failed()
    clock.now += 4
    assert b.retry_in() == pytest.approx(6)
    assert b.state == "open"  # retry_in changes nothing
    clock.now += 6
    assert b.check() is None
    b.succeeded()
    assert not b.suspect


def test_a_request_that_failed_before_it_opened_changes_nothing() -> None:
    clock = Clock()
    b = _breaker(clock)
    for _ in range(3):
        b.failed()
    until = b.open_until
    b.failed()
    assert (b.state, b.open_until) == ("open", until)


def test_breakers_are_kept_per_scheme_host_and_port() -> None:
    registry = BreakerRegistry()
    a = registry.for_url("https://API.fathom.ai/external/v1")
    assert a is registry.for_url("https://api.fathom.ai/other")
    assert a is not registry.for_url("http://127.0.0.1:9/external/v1")
    assert host_of("https://user:secret@us-1.api.gong.io:8443/v2") == "https://us-1.api.gong.io:8443"
    assert BreakerRegistry(enabled=False).for_url("https://api.fathom.ai") is None


def _settings() -> PullSettings:
    values = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "retry_attempts": 3}
    return PullSettings(**{f"CALLSTREAM_GATEWAY_PULL_{k.upper()}": v for k, v in values.items()})


async def test_requests_count_5xx_and_refusals_against_the_host_but_not_4xx() -> None:
    seen: list[str] = []
    answers = {"/ok": 200, "/auth": 401, "/missing": 404, "/slow-down": 429, "/down": 503}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/refused":
            raise httpx.ConnectError("refused")
        return httpx.Response(answers[request.url.path], headers={"Retry-After": "0"})

    clock = Clock()
    breaker = Breaker("https://p.example", failures_to_open=4, open_seconds=10, clock=clock)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    http = ProviderHttp(client, AccountLimits(), _settings(), {}, "fathom", breaker=breaker)
    with pytest.raises(AuthFailed):
        await http.request("GET", "https://p.example/auth")
    assert (await http.request("GET", "https://p.example/missing")).status_code == 404
    assert breaker.failures == 0  # 4xx: the host is up, the run is what is wrong
    with pytest.raises(ProviderUnavailable):
        await http.request("GET", "https://p.example/down")  # three attempts
    assert breaker.failures == 3
    with pytest.raises(ProviderUnavailable):
        await http.request("GET", "https://p.example/refused")
    assert breaker.state == "open"
    sent = len(seen)
    with pytest.raises(ProviderUnavailable) as released:
        await http.request("GET", "https://p.example/ok")
    assert len(seen) == sent  # open: nothing sent
    assert released.value.delay == pytest.approx(10)
    clock.now += 10
    assert (await http.request("GET", "https://p.example/ok")).status_code == 200  # the probe
    assert breaker.state == "closed"
