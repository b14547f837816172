"""One provider request, kept inside the limits and retried the way the providers ask.

429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter
(tenacity), waiting ``Retry-After`` when the provider sends one; a ``Retry-After`` longer than
the settings allow (Gong's daily quota) defers the run instead of holding the worker. 401 asks
the caller's ``reauthorize`` once (an OAuth refresh), then ends the run like 403 does. Other
answers go back to the caller, which knows what a provider's 400 or 404 means.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from callstream.runtime import get_logger

from ._errors import AuthFailed, RunDeferred
from ._limits import AccountLimits
from ._settings import PullSettings

log = get_logger(__name__)

Headers = Mapping[str, str]
Reauthorize = Callable[[], Awaitable[Headers]]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


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
    """Requests to one provider account with its auth headers, limits and retry policy."""

    client: httpx.AsyncClient
    limits: AccountLimits
    settings: PullSettings
    headers: Headers
    provider: str
    reauthorize: Reauthorize | None = None
    requests_sent: int = 0

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.settings.backoff_initial_seconds, max=self.settings.backoff_max_seconds
        )(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after + min(backoff, 1.0) * 0.1  # a little jitter so replicas do not align
        return backoff

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
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retry_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, url, heavy=heavy, **kwargs)
        except _Retryable as exc:
            raise RunDeferred(
                f"{self.provider} still failing after {self.settings.retry_attempts} attempts: {exc.reason}",
                exc.retry_after or self.settings.redeliver_delay_seconds,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, url: str, *, heavy: bool, **kwargs: Any) -> httpx.Response:
        await self.limits.acquire(heavy=heavy)
        self.requests_sent += 1
        try:
            response = await self.client.request(method, url, headers=self.headers, **kwargs)
        except httpx.TimeoutException:
            raise _Retryable("timeout") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is not None and wait > self.settings.max_retry_after_seconds:
                raise RunDeferred(f"{self.provider} asks to wait {wait:.0f}s (HTTP {status})", wait)
            log.info("provider asks to retry", provider=self.provider, status=status, retry_after=wait)
            raise _Retryable(f"HTTP {status}", wait)
        return response
