"""Scheduled pulls from Fathom and Gong: the SYNC work-queue consumer, the provider clients, the
limits and the checkpoints. ``pull_worker(settings)`` is what the gateway's runtime starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx

from callstream.runtime import ServiceRuntime

from .._settings import Settings
from ._breaker import Breaker, BreakerRegistry
from ._checkpoint import Checkpoint, CheckpointStore
from ._errors import AuthFailed, CursorExpired, ProviderUnavailable, ReauthNeeded, RunDeferred, RunFailed
from ._limits import LimiterRegistry, window_limiter
from ._quota import DailyQuota, QuotaSpent, QuotaStore
from ._settings import PullSettings, load_pull_settings
from ._worker import IntegrationSource, ProviderHosts, PullState, PullWorker


def pull_worker(
    settings: Settings,
    *,
    store: IntegrationSource | None = None,
    http: httpx.AsyncClient | None = None,
    pull_settings: PullSettings | None = None,
) -> Callable[[ServiceRuntime], Awaitable[None]]:
    """The background worker ``build_app`` registers: ``runtime.add_worker("pull", pull_worker(...))``.

    ``store`` and ``http`` are the gateway's own IntegrationStore and provider client when given
    (one OAuth refresh path, one connection pool). ``CALLSTREAM_GATEWAY_PULL_*`` is read now, so a
    bad variable stops the gateway at start."""
    chosen = pull_settings or load_pull_settings()
    # Made once: the supervisor's restarts of ``run`` share the slots, the breakers and the runs
    # still going, so a broker blip neither doubles the runs at once nor forgets a failing host.
    state = PullState(chosen)

    async def run(runtime: ServiceRuntime) -> None:
        await runtime.broker.wait_connected()
        js = runtime.broker.js
        async with contextlib.AsyncExitStack() as stack:
            client = http
            if client is None:
                timeout = httpx.Timeout(settings.provider_timeout_seconds)
                client = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout))
            source = store
            if source is None:
                from .._integrations import IntegrationStore

                source = IntegrationStore.from_settings(runtime.db, settings, http=client)
            checkpoints = await CheckpointStore.open(
                js,
                chosen.checkpoint_bucket,
                ttl_seconds=chosen.checkpoint_ttl_days * 86_400,
                replicas=settings.stream_replicas,
            )
            quotas = await QuotaStore.open(js, chosen.quota_bucket, replicas=settings.stream_replicas)
            worker = PullWorker(
                js=js,
                store=source,
                http=client,
                checkpoints=checkpoints,
                settings=chosen,
                hosts=ProviderHosts(settings.fathom_api_url, settings.gong_api_url),
                stopping=asyncio.Event(),
                limiters=LimiterRegistry(chosen, quotas),
                state=state,
            )
            watcher = asyncio.create_task(_forward_stop(runtime.stopping, worker.stopping))
            try:
                await worker.serve()
            finally:
                watcher.cancel()

    return run


async def _forward_stop(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


__all__ = [
    "AuthFailed",
    "Breaker",
    "BreakerRegistry",
    "Checkpoint",
    "CheckpointStore",
    "CursorExpired",
    "DailyQuota",
    "IntegrationSource",
    "LimiterRegistry",
    "ProviderHosts",
    "ProviderUnavailable",
    "PullSettings",
    "PullState",
    "PullWorker",
    "QuotaSpent",
    "QuotaStore",
    "ReauthNeeded",
    "RunDeferred",
    "RunFailed",
    "load_pull_settings",
    "pull_worker",
    "window_limiter",
]
