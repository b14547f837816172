"""What the gateway's HTTP handlers share: settings, the database pool, the cipher, one HTTP client."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from callstream.runtime import ApiError, ServiceRuntime

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


def admin_guard(settings: Settings) -> Any:
    """Litestar guard: ``Authorization: Bearer $CALLSTREAM_ADMIN_TOKEN`` (constant-time compare)."""
    expected = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if expected is None:
            raise ApiError(401, "admin_disabled", "the admin API is closed: CALLSTREAM_ADMIN_TOKEN is not set")
        scheme, _sep, given = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "a valid admin bearer token is required")

    return guard


async def decode_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """Decode a JSON request body into ``type_`` with a clear 400 on anything wrong."""
    body = await request.body()
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
