"""OAuth connect: ``/v1/oauth/{provider}/authorize`` (admin) and ``/v1/oauth/{provider}/callback``.

The ``state`` is random, stored only as its SHA-256, valid for ten minutes and consumed by the first
callback that presents it (``DELETE ... RETURNING``), so a reused, unknown or expired state is a 400.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, Router, get
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from callstream.runtime import ApiError, get_logger

from . import _integration_db, _oauth
from ._context import GatewayContext, admin_guard
from ._credentials import Credentials, seal_credentials
from ._integration_db import IntegrationView
from ._outbound import UrlNotAllowed, check_api_url

log = get_logger(__name__)


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _check_workspace(value: str) -> str:
    if not value or len(value) > 64 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        raise ApiError(400, "invalid_request", "workspace_id is 1-64 of [A-Za-z0-9_-]")
    return value


def oauth_routers(ctx: GatewayContext) -> list[Router]:
    settings = ctx.settings
    apps = _oauth.apps_from_settings(settings)
    allowed_hosts = settings.api_host_allow_list()

    def app_for(provider: str) -> _oauth.OAuthApp:
        if provider not in _oauth.PROVIDERS:
            raise ApiError(404, "unknown_provider", "OAuth providers are fathom and gong")
        app = apps.get(provider)
        if app is None:
            raise ApiError(400, "oauth_not_configured", f"no OAuth app is configured for {provider}")
        return app

    def redirect_uri(request: Request[Any, Any, Any], provider: str) -> str:
        base = settings.public_base_url or str(request.base_url)
        return base.rstrip("/") + f"/v1/oauth/{provider}/callback"

    @get("/v1/oauth/{provider:str}/authorize", summary="Start connecting a provider account (302)")
    async def authorize(
        request: Request[Any, Any, Any],
        provider: FromPath[str],
        workspace_id: FromQuery[str],
        integration_id: FromQuery[str | None] = None,
    ) -> Redirect:
        app = app_for(provider)
        _check_workspace(workspace_id)
        existing: uuid.UUID | None = None
        if integration_id is not None:
            existing = _integration_db.parse_id(integration_id)
            row = existing and await ctx.db.fetchrow(
                "select workspace_id, provider from integrations where id = $1 and status <> 'erased'", existing
            )
            if not row or row["workspace_id"] != workspace_id or row["provider"] != provider:
                raise ApiError(404, "unknown_integration", "no integration of this workspace and provider has this id")
        state = secrets.token_urlsafe(32)
        uri = redirect_uri(request, provider)
        await ctx.db.execute("delete from oauth_states where expires_at < now() - interval '1 day'")
        await ctx.db.execute(
            """insert into oauth_states (state_hash, provider, workspace_id, integration_id, redirect_uri, expires_at)
               values ($1, $2, $3, $4, $5, $6)""",
            _hash_state(state),
            provider,
            workspace_id,
            existing,
            uri,
            datetime.now(UTC) + timedelta(seconds=settings.oauth_state_ttl_seconds),
        )
        return Redirect(app.authorization_url(uri, state), status_code=302)

    @get("/v1/oauth/{provider:str}/callback", summary="The provider sends the user back here")
    async def callback(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[IntegrationView]:
        app = app_for(provider)
        query = request.query_params  # ``state`` is a reserved parameter name in litestar
        state, code, error = query.get("state"), query.get("code"), query.get("error")
        if not state:
            raise ApiError(400, "invalid_state", "state is missing")
        row = await ctx.db.fetchrow(
            """delete from oauth_states where state_hash = $1 and provider = $2
               returning workspace_id, integration_id, redirect_uri, expires_at > now() as fresh""",
            _hash_state(state),
            provider,
        )
        if row is None:
            raise ApiError(400, "invalid_state", "unknown or already used state; start again from authorize")
        if not row["fresh"]:
            raise ApiError(400, "expired_state", "the state expired; start again from authorize")
        if error:
            raise ApiError(400, "authorization_denied", f"{provider} answered {error[:100]}")
        if not code:
            raise ApiError(400, "invalid_request", "code is missing")
        try:
            tokens = await _oauth.exchange_code(ctx.http, app, code, row["redirect_uri"])
        except _oauth.InvalidGrant as exc:
            raise ApiError(400, "invalid_grant", exc.detail) from None
        except _oauth.OAuthError as exc:
            raise ApiError(502, "provider_error", exc.detail) from None
        if tokens.api_base_url is not None:  # the host later calls go to, with these tokens
            try:
                tokens = replace(
                    tokens, api_base_url=check_api_url(tokens.api_base_url, allowed_hosts, "api_base_url_for_customer")
                )
            except UrlNotAllowed as exc:
                log.warning("oauth api host refused", provider=provider, workspace_id=row["workspace_id"])
                raise ApiError(502, "base_url_not_allowed", f"{provider} answered with {exc}") from None
        integration_id = await _store(ctx, provider, row["workspace_id"], row["integration_id"], tokens)
        await ctx.changed(str(integration_id))
        view = await _integration_db.view(ctx.db, integration_id, settings.public_base_url)
        assert view is not None
        log.info("oauth connected", integration_id=view.id, provider=provider, workspace_id=view.workspace_id)
        return Response(view, status_code=200)

    return [
        Router(path="/", guards=[admin_guard(settings)], route_handlers=[authorize]),
        Router(path="/", route_handlers=[callback]),
    ]


async def _store(
    ctx: GatewayContext, provider: str, workspace_id: str, integration_id: uuid.UUID | None, tokens: _oauth.TokenSet
) -> uuid.UUID:
    """Create the OAuth integration, or update the one being reconnected (or the workspace's
    existing OAuth integration of this provider)."""
    credentials = Credentials(
        access_token=tokens.access_token, refresh_token=tokens.refresh_token, expires_at=tokens.expires_at
    )
    async with ctx.db.acquire() as conn, conn.transaction():
        target = integration_id or await conn.fetchval(
            """select id from integrations where workspace_id = $1 and provider = $2 and auth_kind = 'oauth'
               and status not in ('disabled', 'erased') order by created_at limit 1 for update""",
            workspace_id,
            provider,
        )
        if target is not None:
            updated = await conn.execute(
                """update integrations set credentials = $2, status = 'active', auth_kind = 'oauth',
                       base_url = coalesce($3, base_url), last_error = null, disabled_at = null, updated_at = now()
                   where id = $1 and status <> 'erased'""",
                target,
                seal_credentials(ctx.cipher, str(target), credentials),
                tokens.api_base_url,
            )
            if updated == "UPDATE 0":  # erased while its user was at the provider: never revived
                raise ApiError(404, "unknown_integration", "the integration was erased")
            return uuid.UUID(str(target))
        new_id = uuid.uuid4()
        await _integration_db.insert(
            conn,
            integration_id=new_id,
            workspace_id=workspace_id,
            provider=provider,
            auth_kind="oauth",
            credentials=seal_credentials(ctx.cipher, str(new_id), credentials),
            webhook_secret=None,
            webhook_id=None,
            base_url=tokens.api_base_url,
            settings={},
        )
        return new_id
