"""Pull workers against the fake providers over real HTTP, on the real JetStream of the test.

Tests get everything through the ``harness`` fixture (test folders are not packages here).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import msgspec
import pytest

from callstream.contracts import (
    CALLS_RAW,
    SYNC_EVENTS,
    RawCall,
    Source,
    SyncEvent,
    SyncFinished,
    SyncMode,
    SyncRequested,
    TimeWindow,
    sync_requested_subject,
)
from callstream.gateway._integrations import IntegrationAccess, ReauthRequired
from callstream.gateway.pull import CheckpointStore, ProviderHosts, PullSettings, PullWorker
from tests.fakes import serve_in_process
from tests.fakes.fathom import FathomConfig, FathomState
from tests.fakes.fathom import create_app as fathom_app
from tests.fakes.gong import GongConfig, GongState
from tests.fakes.gong import create_app as gong_app

WORKSPACE = "ws-pull"


def pull_settings(**values: Any) -> PullSettings:
    fast: dict[str, Any] = {
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.3,
        "heartbeat_seconds": 0.5,
        "redeliver_delay_seconds": 0.2,
    }
    fast.update(values)
    aliased: dict[str, Any] = {f"CALLSTREAM_GATEWAY_PULL_{k.upper()}": v for k, v in fast.items()}
    return PullSettings(**aliased)


@dataclass
class MemoryStore:
    """The IntegrationStore interface over a dict; ``refresh`` does the provider's token call."""

    accesses: dict[str, IntegrationAccess] = field(default_factory=dict)
    refresh: Callable[[IntegrationAccess], Any] | None = None
    refreshes: int = 0

    async def access(self, integration_id: str) -> IntegrationAccess | None:
        return self.accesses.get(integration_id)

    async def status(self, integration_id: str) -> str | None:
        found = self.accesses.get(integration_id)
        return None if found is None else found.status

    async def refreshed(self, integration_id: str, stale_access_token: str | None) -> IntegrationAccess:
        current = self.accesses[integration_id]
        if stale_access_token is not None and current.access_token != stale_access_token:
            return current
        if self.refresh is None:
            raise ReauthRequired(integration_id, "no refresh")
        self.refreshes += 1
        fresh: IntegrationAccess = await self.refresh(current)
        self.accesses[integration_id] = fresh
        return fresh

    def add(self, provider: str, auth_kind: str, base_url: str, **secrets: Any) -> str:
        integration_id = str(uuid.uuid4())
        self.accesses[integration_id] = IntegrationAccess(
            id=integration_id,
            workspace_id=WORKSPACE,
            provider=provider,
            status="active",
            auth_kind=auth_kind,
            base_url=base_url,
            **secrets,
        )
        return integration_id


@dataclass
class Harness:
    js: Any
    store: MemoryStore
    checkpoints: CheckpointStore
    http: httpx.AsyncClient
    settings: PullSettings
    workers: list[tuple[PullWorker, asyncio.Task[None]]] = field(default_factory=list)

    def worker(
        self, settings: PullSettings | None = None, js: Any = None, max_deliver: int = 20, limiters: Any = None
    ) -> PullWorker:
        return PullWorker(
            js=js or self.js,
            store=self.store,
            http=self.http,
            checkpoints=self.checkpoints,
            settings=settings or self.settings,
            hosts=ProviderHosts("http://unused", "http://unused"),
            max_deliver=max_deliver,
            limiters=limiters,
        )

    def start(
        self, settings: PullSettings | None = None, js: Any = None, max_deliver: int = 20, limiters: Any = None
    ) -> PullWorker:
        worker = self.worker(settings, js, max_deliver, limiters)
        self.workers.append((worker, asyncio.create_task(worker.serve())))
        return worker

    async def request(
        self,
        provider: Source,
        integration_id: str,
        mode: SyncMode = "backfill",
        *,
        window: TimeWindow | None = None,
        limit: int | None = None,
    ) -> str:
        req = self.sync_request(provider, integration_id, mode, window=window, limit=limit)
        await self.js.publish(
            sync_requested_subject(provider), msgspec.json.encode(req), headers={"Nats-Msg-Id": req.run_id}
        )
        return req.run_id

    @staticmethod
    def sync_request(
        provider: Source,
        integration_id: str,
        mode: SyncMode = "backfill",
        *,
        window: TimeWindow | None = None,
        limit: int | None = None,
    ) -> SyncRequested:
        run_id = str(uuid.uuid4())
        return SyncRequested(
            run_id=run_id,
            integration_id=integration_id,
            workspace_id=WORKSPACE,
            provider=provider,
            mode=mode,
            window=window or TimeWindow(),
            limit=limit,
        )

    async def events(self, run_id: str) -> list[SyncEvent]:
        found: list[SyncEvent] = []
        info = await self.js.stream_info(SYNC_EVENTS)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(Exception):
                msg = await self.js.get_msg(SYNC_EVENTS, seq)
                event = msgspec.json.decode(msg.data, type=SyncEvent)
                if event.run_id == run_id:
                    found.append(event)
        return found

    async def finished(self, run_id: str, timeout: float = 60.0) -> SyncFinished:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e for e in await self.events(run_id) if isinstance(e, SyncFinished)]
            if done:
                return done[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")

    async def raw_calls(self) -> list[tuple[RawCall, dict[str, str]]]:
        info = await self.js.stream_info(CALLS_RAW)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            msg = await self.js.get_msg(CALLS_RAW, seq)
            out.append((msgspec.json.decode(msg.data, type=RawCall), dict(msg.headers or {})))
        return out

    # helpers for the tests (the test folders are not packages, so they come with the fixture)
    settings_with = staticmethod(pull_settings)

    def gong_basic(self, url: str, secret: str = "gong-access-secret") -> str:  # noqa: S107
        return gong_basic(self.store, url, secret)

    @staticmethod
    def max_in_window(times: list[float], window: float) -> int:
        return max_in_window(times, window)

    @staticmethod
    async def fathom_oauth_tokens(url: str, state: FathomState) -> dict[str, Any]:
        return await fathom_oauth_tokens(url, state)

    @staticmethod
    def fathom_refresher(url: str, state: FathomState, refresh_tokens: dict[str, str]) -> Callable[..., Any]:
        return fathom_refresher(url, state, refresh_tokens)

    async def kill(self, worker: PullWorker) -> None:
        """As if the process died: no nak, no ack, no checkpoint; the lease just stops being renewed."""
        for w, task in self.workers:
            if w is worker:
                task.cancel()
                for run in list(worker.running):
                    run.cancel()
                await asyncio.gather(task, *worker.running, return_exceptions=True)

    async def stop(self) -> None:
        for worker, _ in self.workers:
            worker.stopping.set()
        await asyncio.gather(*(task for _, task in self.workers), return_exceptions=True)


def gong_basic(store: MemoryStore, url: str, secret: str = "gong-access-secret") -> str:  # noqa: S107
    return store.add("gong", "basic", url, access_key="gong-access-key", access_key_secret=secret)


async def fathom_oauth_tokens(url: str, state: FathomState) -> dict[str, Any]:
    code = state.issue_code(state.config.default_account)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/external/v1/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": state.config.oauth_client_id,
                "client_secret": state.config.oauth_client_secret,
                "redirect_uri": "http://localhost/cb",
            },
        )
    response.raise_for_status()
    return dict(response.json())


def fathom_refresher(url: str, state: FathomState, refresh_tokens: dict[str, str]) -> Callable[..., Any]:
    async def refresh(current: IntegrationAccess) -> IntegrationAccess:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{url}/external/v1/oauth2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_tokens[current.id],
                    "client_id": state.config.oauth_client_id,
                    "client_secret": state.config.oauth_client_secret,
                },
            )
        if response.status_code == 400:
            raise ReauthRequired(current.id, "invalid_grant")
        tokens = response.json()
        refresh_tokens[current.id] = tokens["refresh_token"]
        return replace(current, access_token=tokens["access_token"])

    return refresh


def max_in_window(times: list[float], window: float) -> int:
    """The most requests seen in any window of ``window`` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


@pytest.fixture
async def harness(jetstream: Any) -> AsyncIterator[Harness]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        checkpoints = await CheckpointStore.open(jetstream, "gateway_pull_checkpoints", ttl_seconds=3600)
        h = Harness(jetstream, MemoryStore(), checkpoints, http, pull_settings())
        try:
            yield h
        finally:
            await h.stop()


@pytest.fixture
async def gong() -> AsyncIterator[tuple[GongState, str]]:
    state = GongState(GongConfig(seed=3, calls=250, span_days=30))
    async with serve_in_process(gong_app(state)) as url:
        yield state, url


@pytest.fixture
async def fathom() -> AsyncIterator[tuple[FathomState, str]]:
    state = FathomState(FathomConfig(seed=5, meetings=35, span_days=30))
    async with serve_in_process(fathom_app(state)) as url:
        yield state, url
