"""One provider request, kept inside the limits and retried the way the providers ask.

429, 5xx, timeouts and dropped connections are retried with exponential backoff and jitter,
waiting ``Retry-After`` when the provider sends one, but only while the request's retries fit in
``hold_wait_seconds``: past that the run is released (``RunDeferred``; ``ProviderUnavailable``
when the provider failed) so it holds no slot while it waits. A host that cannot be connected to
at all (refused, connect timeout) releases the run at once: that is an outage, not a blip. Unreachable hosts, connect
timeouts and 5xx count against the host's circuit breaker (``_breaker``; a read timeout only once
two accounts saw one, a local error never); while it is open, requests to the
host are not sent and the run is released until the next probe. 401 asks the caller's
``reauthorize`` once (an OAuth refresh), then ends the run like 403 does. Other answers go back to
the caller, which knows what a provider's 400 or 404 means.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry.trace import Status, StatusCode

from callstream.runtime import SpanKind, get_logger, tracing

from .._gauges import PROVIDER_RESPONSES, status_class
from ._breaker import Breaker
from ._errors import AuthFailed, ProviderUnavailable, RunDeferred, RunFailed
from ._limits import AccountLimits
from ._settings import PullSettings

log = get_logger(__name__)

Headers = Mapping[str, str]
Reauthorize = Callable[[], Awaitable[Headers]]


class _Retryable(Exception):
    def __init__(
        self, reason: str, retry_after: float | None = None, *, failed: bool = True, unreachable: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.failed = failed  # the provider failed (not a 429: it asks us to slow down)
        self.unreachable = unreachable  # no connection at all: not worth a retry in the slot


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class ProviderHttp:
    """Requests to one provider account with its auth headers, limits, breaker and retry policy."""

    client: httpx.AsyncClient
    limits: AccountLimits
    settings: PullSettings
    headers: Headers
    provider: str
    reauthorize: Reauthorize | None = None
    requests_sent: int = 0
    breaker: Breaker | None = None
    account: str = ""  # the account's key (no secret): whose timeouts count once against the host

    def backoff(self, failures: int) -> float:
        """Exponential from ``backoff_initial_seconds``, capped, with "equal jitter" (half to all
        of it) so the runs that failed together do not come back together."""
        s = self.settings
        ceiling = min(s.backoff_max_seconds, s.backoff_initial_seconds * 2.0 ** min(failures - 1, 30))
        return ceiling * random.uniform(0.5, 1.0)  # jitter, not a secret

    async def request(self, method: str, url: str, *, heavy: bool = False, **kwargs: Any) -> httpx.Response:
        reauthorized = False
        while True:
            response = await self._with_retries(method, url, heavy=heavy, **kwargs)
            if response.status_code == 401 and self.reauthorize is not None and not reauthorized:
                self.headers = await self.reauthorize()
                reauthorized = True
                continue
            if response.status_code in (401, 403):
                raise AuthFailed(f"{self.provider} refused the credentials (HTTP {response.status_code})")
            return response

    async def _with_retries(self, method: str, url: str, *, heavy: bool, **kwargs: Any) -> httpx.Response:
        s = self.settings
        hold = min(s.hold_wait_seconds, s.max_retry_after_seconds)
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._once(method, url, heavy=heavy, **kwargs)
            except _Retryable as exc:
                wait = exc.retry_after if exc.retry_after is not None else self.backoff(attempts)
                spent = time.monotonic() - started  # attempts, limits and earlier waits
                if exc.unreachable or attempts >= s.retry_attempts or spent + wait > hold:
                    released = ProviderUnavailable if exc.failed else RunDeferred
                    raise released(f"{self.provider}: {exc.reason} after {attempts} attempt(s)", wait) from None
                if exc.retry_after is not None:
                    wait += random.uniform(0.0, 0.1)  # so replicas do not align
                log.info("provider asks to retry", provider=self.provider, reason=exc.reason, wait=round(wait, 2))
                await asyncio.sleep(wait)

    async def _once(self, method: str, url: str, *, heavy: bool, **kwargs: Any) -> httpx.Response:
        breaker = self.breaker
        if breaker is not None:
            closed_for = breaker.check()
            if closed_for is not None:
                raise ProviderUnavailable(
                    f"{self.provider} host {breaker.host} is failing (breaker open); not tried", closed_for
                )
        probing = breaker is not None and breaker.state == "half_open"
        reported = False
        try:
            await self.limits.acquire(heavy=heavy)
            self.requests_sent += 1
            try:
                if tracing.on:
                    response = await self._traced(method, url, **kwargs)
                else:
                    response = await self.client.request(method, url, headers=self.headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                reported = self._report(failed=True)
                PROVIDER_RESPONSES.labels(self.provider, "error").inc()
                raise _Retryable(f"unreachable ({type(exc).__name__})", unreachable=True) from None
            except httpx.PoolTimeout:
                # This process's own pool is busy: retried, never held against the host.
                PROVIDER_RESPONSES.labels(self.provider, "error").inc()
                raise _Retryable("local connection pool busy (PoolTimeout)", failed=False) from None
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                # The tenant's own request cannot be sent (an API key with a newline): no retry
                # helps and the host did nothing wrong.
                PROVIDER_RESPONSES.labels(self.provider, "error").inc()
                raise RunFailed(f"{self.provider}: the request cannot be sent ({type(exc).__name__})") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                # A read timeout or a dropped answer: a hung host, or one tenant's huge meeting;
                # it counts against the host once a second account sees it too.
                reported = self._report(failed=True, account=self.account or None)
                PROVIDER_RESPONSES.labels(self.provider, "error").inc()
                what = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
                raise _Retryable(f"{what} ({type(exc).__name__})") from None
            status = response.status_code
            PROVIDER_RESPONSES.labels(self.provider, status_class(status)).inc()
            reported = self._report(failed=status >= 500)
        finally:
            if probing and not reported and breaker is not None:
                breaker.released()
        if status == 429 or status >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is not None and wait > self.settings.max_retry_after_seconds:
                released = ProviderUnavailable if status >= 500 else RunDeferred
                raise released(f"{self.provider} asks to wait {wait:.0f}s (HTTP {status})", wait)
            raise _Retryable(f"HTTP {status}", wait, failed=status >= 500)
        return response

    async def _traced(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The request in a client span: method, host and path (no query, no headers: the
        credentials stay out of traces)."""
        parts = urlsplit(url)
        with tracing.span(
            f"{method} {self.provider}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": parts.hostname,
                "server.port": parts.port,
                "url.path": parts.path,
                "callstream.provider": self.provider,
            },
        ) as span:
            response = await self.client.request(method, url, headers=self.headers, **kwargs)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status_code}"))
            return response

    def _report(self, *, failed: bool, account: str | None = None) -> bool:
        if self.breaker is not None:
            if failed:
                self.breaker.failed(account)
            else:
                self.breaker.succeeded()
        return True
