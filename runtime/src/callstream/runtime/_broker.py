"""NATS connection kept alive for the life of a service.

nats-py reconnects on its own once connected, but its first connect fails when the server is not
there yet; :class:`Broker` retries that with backoff in the background so start-up never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from callstream.contracts import inbox_prefix

from ._logging import get_logger

if TYPE_CHECKING:
    from ._settings import ServiceSettings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """How a process proves who it is to NATS, and TLS. Empty: the URL decides (``user:pw@host``)."""

    user: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> NatsAuth:
        password = settings.nats_password.get_secret_value() if settings.nats_password else None
        if settings.nats_password_file is not None:
            password = settings.nats_password_file.read_text().strip()
        return cls(settings.nats_user, password, settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {}
        if self.user:
            options.update(user=self.user, password=self.password or "")
            # Replies (and pulled messages) come to this identity's own prefix: the only one its
            # permissions let it subscribe to, so no service can listen to another's.
            options["inbox_prefix"] = inbox_prefix(self.user)
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
            if self.tls_cert:
                context.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
            options["tls"] = context
        return options


async def connect_nats(settings: ServiceSettings, name: str, **options: Any) -> Client:
    """One plain connection with the service's identity (command-line tools: replay, dlq)."""
    return await nats.connect(
        settings.nats_url, name=name, **NatsAuth.from_settings(settings).connect_options(), **options
    )


OnConnect = Callable[["Broker"], Awaitable[None]]


class Broker:
    def __init__(self, servers: str, name: str, *, connect_timeout: float = 2.0, auth: NatsAuth | None = None) -> None:
        self._servers = [s.strip() for s in servers.split(",") if s.strip()]
        self._name = name
        self._auth = auth or NatsAuth()
        self._connect_timeout = connect_timeout
        self._nc: Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_connect: list[OnConnect] = []

    def on_connect(self, callback: OnConnect) -> None:
        """Run once after the first successful connection (e.g. to declare streams, start consumers)."""
        self._on_connect.append(callback)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise ConnectionError("NATS is not connected yet")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name=f"{self._name}-nats-connect")

    async def _connect_once(self) -> Client:
        return await nats.connect(
            servers=self._servers,
            name=self._name,
            connect_timeout=self._connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            ping_interval=5,
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **self._auth.connect_options(),
        )

    async def _connect_forever(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            retry=retry_if_exception_type(Exception),
            before_sleep=lambda s: log.warning("nats unreachable, retrying", attempt=s.attempt_number),
        ):
            with attempt:
                self._nc = await self._connect_once()
        log.info("nats connected")
        self._connected.set()
        for callback in self._on_connect:
            await callback(self)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error", error=type(exc).__name__, detail=str(exc))

    async def _on_disconnected(self) -> None:
        log.warning("nats disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats reconnected")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            except Exception:
                # After an outage nats-py may fail to write its goodbye on a transport uvloop has
                # already closed; the process is stopping either way, so that is no failed stop.
                with contextlib.suppress(Exception):
                    await self._nc.close()

    async def check(self) -> None:
        """Connected, and JetStream answers (a server can take core NATS traffic while its
        JetStream does not: a lost meta leader, a full store)."""
        if not self.is_connected:
            raise ConnectionError("NATS is not connected")
        async with asyncio.timeout(1.5):
            await self.nc.flush(timeout=1)
            await self.js.account_info()
