"""What the gateway's HTTP handlers share: settings, the database pool, the cipher, one HTTP client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
from litestar import Request

from callstream.runtime import AdminToken, ApiError, ServiceRuntime

from ._crypto import Cipher
from ._integrations import IntegrationStore
from ._secret_cache import WebhookSecretCache
from ._settings import Settings

T = TypeVar("T")


@dataclass(slots=True)
class GatewayContext:
    settings: Settings
    runtime: ServiceRuntime
    cipher: Cipher
    http: httpx.AsyncClient
    integrations: IntegrationStore
    webhook_secrets: WebhookSecretCache

    @property
    def db(self) -> asyncpg.Pool:
        return self.runtime.db

    async def changed(self, integration_id: str) -> None:
        """This replica sees its own change at once; the others hear of it through NOTIFY."""
        await self.webhook_secrets.reload_one(self.db, integration_id)


def admin_guard(settings: Settings) -> AdminToken:
    """Litestar guard: ``Authorization: Bearer $CALLSTREAM_GATEWAY_ADMIN_TOKEN`` (runtime's digest compare)."""
    return settings.admin()


async def decode_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """Decode a JSON request body into ``type_`` with a clear 400 on anything wrong."""
    body = await request.body()
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
