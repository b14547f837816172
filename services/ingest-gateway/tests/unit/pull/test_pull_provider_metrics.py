"""Every provider answer to a pull request is counted by status class, 429 on its own, and a
request that got no answer as "error" (the syncs dashboard's provider and 429 panels)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from callstream.gateway.pull import ProviderUnavailable, PullSettings, RunDeferred
from callstream.gateway.pull._http import ProviderHttp
from callstream.gateway.pull._limits import AccountLimits

STATUSES = ("2xx", "429", "5xx", "error")


def counts() -> dict[str, float]:
    return {
        s: REGISTRY.get_sample_value(
            "callstream_gateway_pull_provider_responses_total", {"provider": "gong", "status": s}
        )
        or 0.0
        for s in STATUSES
    }


async def test_answers_are_counted_by_status_class() -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.Response(503),
        httpx.Response(429),
        httpx.ConnectError("refused"),
        httpx.Response(200),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    settings = PullSettings(
        CALLSTREAM_GATEWAY_PULL_BACKOFF_INITIAL_SECONDS=0.01,
        CALLSTREAM_GATEWAY_PULL_BACKOFF_MAX_SECONDS=0.02,
        CALLSTREAM_GATEWAY_PULL_RETRY_ATTEMPTS=6,
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    http = ProviderHttp(client, AccountLimits(), settings, {"Authorization": "Bearer t"}, "gong")
    before = counts()
    try:
        # An unreachable host releases the run at once; the next run's request is answered.
        with pytest.raises((ProviderUnavailable, RunDeferred), match="unreachable"):
            await http.request("GET", "https://p.example/x")
        response = await http.request("GET", "https://p.example/x")
    finally:
        await client.aclose()
    assert response.status_code == 200
    after = counts()
    assert {s: after[s] - before[s] for s in STATUSES} == {"2xx": 1, "429": 1, "5xx": 1, "error": 1}
