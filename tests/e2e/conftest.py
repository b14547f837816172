"""The whole stack as real processes on this test's database and streams."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from standardwebhooks import Webhook

from callstream.devstack import SERVICES, ServiceProcess, admin_headers

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "tests" / "unit" / "examples"


def fathom_meeting(recording_id: int, *, transcript: bool = True, **overrides: Any) -> dict[str, Any]:
    """The documented webhook body with a new identity."""
    meeting = json.loads((EXAMPLES / "fathom_webhook_meeting.json").read_text())
    meeting["recording_id"] = recording_id
    meeting["share_url"] = f"https://fathom.video/share/e2e-{recording_id}"
    meeting["url"] = f"https://fathom.video/calls/{recording_id + 1000}"
    if not transcript:
        meeting["transcript"] = None
    meeting.update(overrides)
    return meeting


@dataclass
class Stack:
    env: dict[str, str]
    procs: dict[str, ServiceProcess]
    nats_url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def admin_token(self, service: str) -> str:
        """``service``'s own admin token (each service with an admin API has one)."""
        return admin_headers(self.env, service)["Authorization"].removeprefix("Bearer ")

    @property
    def admin_tokens(self) -> dict[str, str]:
        return {s.name: self.env[s.admin_token_env] for s in SERVICES if s.admin_token_env}

    def url(self, service: str) -> str:
        return self.procs[service].url

    def client(self, service: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=self.url(service), headers=admin_headers(self.env, service), timeout=10.0)
        self.clients.append(c)
        return c

    async def fathom_integration(self, workspace_id: str = "acme") -> tuple[str, str]:
        """A Fathom integration with a webhook secret; returns (integration id, secret)."""
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        r = await self.client("gateway").post(
            "/v1/integrations",
            json={
                "workspace_id": workspace_id,
                "provider": "fathom",
                "credentials": {"api_key": "e2e-api-key"},
                "webhook_secret": secret,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()["id"], secret


def signed_headers(secret: str, body: bytes, webhook_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def eventually(probe: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """The first truthy result of ``probe`` (sync or async) within ``timeout``."""
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


@pytest.fixture
async def stack(
    service_env: dict[str, str], nats_url: str, jetstream: object, start_service: Callable[..., ServiceProcess]
) -> AsyncIterator[Stack]:
    procs = {
        name: start_service(name, service_env, wait=False) for name in ("gateway", "normalizer", "linker", "scheduler")
    }
    for proc in procs.values():
        await asyncio.to_thread(proc.wait_ready)
    s = Stack(service_env, procs, nats_url)
    try:
        yield s
    finally:
        for c in s.clients:
            await c.aclose()


class Subscriber:
    """An internal service listening to MessageUpserted with a durable consumer of its own."""

    def __init__(self, nats_url: str, durable: str = "e2e-subscriber") -> None:
        self.nats_url = nats_url
        self.durable = durable
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Subscriber:
        self.nc = await nats.connect(self.nats_url)
        js = self.nc.jetstream()
        self.sub = await js.pull_subscribe("messages.upserted.>", durable=self.durable, stream="MESSAGES")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.nc.close()

    async def drain(self, wait: float = 0.5) -> list[dict[str, Any]]:
        """Everything delivered so far, waiting ``wait`` seconds for stragglers."""
        while True:
            try:
                batch = await self.sub.fetch(100, timeout=wait)
            except (nats.errors.TimeoutError, TimeoutError):
                return self.events
            for msg in batch:
                self.events.append(json.loads(msg.data))
                await msg.ack()
