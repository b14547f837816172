"""OAuth connect: ``/v1/oauth/{provider}/authorize`` (admin), connect sessions
(``POST /v1/connect-sessions``, admin or a manage token; ``GET /v1/connect/{id}``, the browser) and
``/v1/oauth/{provider}/callback``, where both end.

The ``state`` is random, stored only as its SHA-256, valid for ten minutes and consumed by the first
callback that presents it (``DELETE ... RETURNING``), so a reused, unknown or expired state is a 400.

A connect session is what a product embeds: its URL, opened once within ten minutes, binds the
browser that opens it with an HttpOnly cookie (only the cookie's SHA-256 is kept) and sends it to the
provider; the callback completes only in that browser, and ends by redirecting to the session's
allow-listed ``return_url`` with ``status=connected&integration_id=...`` or ``status=error&error=<code>``.
PKCE S256 is used where a provider's app takes it (``CALLSTREAM_GATEWAY_{FATHOM,GONG}_PKCE``).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from callstream.runtime import ApiError, get_logger, still_manages_sql
from callstream.runtime._http import ErrorBody

from . import _fathom_api, _integration_db, _oauth
from ._access import manage_caller
from ._context import GatewayContext, admin_guard, decode_body
from ._credentials import Credentials, seal_credentials, seal_webhook_secret
from ._integration_db import IntegrationView
from ._outbound import AllowedHost, UrlNotAllowed, check_api_url, check_return_url

log = get_logger(__name__)


CONNECT_SESSION_SECONDS = 600  # a session's URL must be opened within this, and its cookie lives as long
COOKIE = "callstream_connect"


class CreateConnectSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workspace_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    provider: Literal["fathom", "gong"]
    return_url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    # Reconnect this integration (of the same workspace and provider); without it, a new one.
    integration_id: str | None = None


class ConnectSession(msgspec.Struct):
    url: str
    expires_at: datetime


# A connect session asked by a manage token completes only while that token still manages the
# session's workspace: revoking a token stops what it started. (Null token_id: the admin token asked.)
_ASKER_STILL_MANAGES = f"(c.token_id is null or {still_manages_sql('c.token_id', 'c.workspace_id')})"


async def _reconnectable(ctx: GatewayContext, workspace_id: str, provider: str, integration_id: str) -> uuid.UUID:
    """The integration an OAuth connect names to reconnect: an OAuth one of that workspace and
    provider, not disabled or erased (404 for any other, like every integration a caller may not
    see). An API-key integration is never turned into an OAuth one: its webhook, registered with
    the key and signed with its secret, would be left behind at the provider."""
    key = _integration_db.parse_id(integration_id)
    row = key and await ctx.db.fetchrow(
        """select status from integrations
           where id = $1 and workspace_id = $2 and provider = $3 and auth_kind = 'oauth'""",
        key,
        workspace_id,
        provider,
    )
    if not row or row["status"] == "erased":
        raise ApiError(404, "unknown_integration", "no OAuth integration of this workspace and provider has this id")
    if row["status"] == "disabled":
        raise _disabled()
    assert key is not None
    return key


def _disabled() -> ApiError:
    return ApiError(
        409, "integration_disabled", "the integration is disabled; connecting does not re-enable it (make a new one)"
    )


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
    return_hosts = settings.return_url_allow_list()
    admin = settings.admin()
    # The cookie goes to the callbacks only, under the gateway's public path (it may sit under a prefix).
    public_path = urlsplit(settings.public_base_url).path.rstrip("/") if settings.public_base_url else ""
    cookie_path = public_path + "/v1/oauth/"

    def app_for(provider: str) -> _oauth.OAuthApp:
        if provider not in _oauth.PROVIDERS:
            raise ApiError(404, "unknown_provider", "OAuth providers are fathom and gong")
        app = apps.get(provider)
        if app is None:
            raise ApiError(400, "oauth_not_configured", f"no OAuth app is configured for {provider}")
        return app

    def base_of(request: Request[Any, Any, Any]) -> str:
        return (settings.public_base_url or str(request.base_url)).rstrip("/")

    def redirect_uri(request: Request[Any, Any, Any], provider: str) -> str:
        return base_of(request) + f"/v1/oauth/{provider}/callback"

    async def start(
        request: Request[Any, Any, Any],
        app: _oauth.OAuthApp,
        workspace_id: str,
        integration_id: uuid.UUID | None,
        connect_session: str | None,
    ) -> str:
        """Store a one-time state (and PKCE verifier) and return the provider's authorize URL."""
        state = secrets.token_urlsafe(32)
        uri = redirect_uri(request, app.provider)
        verifier = _oauth.new_code_verifier() if app.pkce else None
        state_hash = _hash_state(state)
        await ctx.db.execute("delete from oauth_states where expires_at < now() - interval '1 day'")
        await ctx.db.execute(
            """insert into oauth_states (state_hash, provider, workspace_id, integration_id, redirect_uri, expires_at,
                                         connect_session, code_verifier)
               values ($1, $2, $3, $4, $5, $6, $7, $8)""",
            state_hash,
            app.provider,
            workspace_id,
            integration_id,
            uri,
            datetime.now(UTC) + timedelta(seconds=settings.oauth_state_ttl_seconds),
            connect_session,
            None if verifier is None else ctx.cipher.encrypt(verifier.encode(), "pkce:" + state_hash),
        )
        return app.authorization_url(uri, state, verifier)

    @get(
        "/v1/oauth/{provider:str}/authorize",
        summary="Start connecting a provider account (302)",
        responses={409: ResponseSpec(ErrorBody, description="the integration named is disabled")},
    )
    async def authorize(
        request: Request[Any, Any, Any],
        provider: FromPath[str],
        workspace_id: FromQuery[str],
        integration_id: FromQuery[str | None] = None,
    ) -> Redirect:
        app = app_for(provider)
        _check_workspace(workspace_id)
        existing = None if integration_id is None else await _reconnectable(ctx, workspace_id, provider, integration_id)
        return Redirect(await start(request, app, workspace_id, existing, None), status_code=302)

    @post(
        "/v1/connect-sessions",
        status_code=201,
        summary="A URL to send a user's browser to: it connects a provider by OAuth, then returns to return_url",
        responses={403: ResponseSpec(ErrorBody, description="an API token without the manage scope")},
    )
    async def create_connect_session(request: Request[Any, Any, Any]) -> Response[ConnectSession]:
        caller = await manage_caller(request, admin, ctx.db)
        body = await decode_body(request, CreateConnectSession)
        if not caller.covers(body.workspace_id):
            raise ApiError(404, "unknown_workspace", "this token covers no workspace of this id")
        app_for(body.provider)
        try:
            return_url = check_return_url(body.return_url, return_hosts)
        except UrlNotAllowed as exc:
            raise ApiError(400, "return_url_not_allowed", str(exc)) from None
        reconnect = (
            None
            if body.integration_id is None
            else await _reconnectable(ctx, body.workspace_id, body.provider, body.integration_id)
        )
        session_id = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + timedelta(seconds=CONNECT_SESSION_SECONDS)
        await ctx.db.execute("delete from connect_sessions where expires_at < now() - interval '1 day'")
        await ctx.db.execute(
            """insert into connect_sessions (id_hash, workspace_id, provider, return_url, token_id, expires_at,
                                             integration_id)
               values ($1, $2, $3, $4, $5, $6, $7)""",
            _hash_state(session_id),
            body.workspace_id,
            body.provider,
            return_url,
            None if caller.token_id is None else uuid.UUID(caller.token_id),
            expires_at,
            reconnect,
        )
        log.info("connect session created", provider=body.provider, workspace_id=body.workspace_id)
        url = base_of(request) + f"/v1/connect/{session_id}"
        return Response(ConnectSession(url, expires_at), status_code=201)

    @get(
        "/v1/connect/{session_id:str}",
        summary="A connect session's URL: binds this browser, then to the provider",
        responses={
            302: ResponseSpec(None, description="to the provider's authorize page, with the browser's cookie"),
            303: ResponseSpec(None, description="to return_url with status=error (session used or expired)"),
        },
    )
    async def open_connect_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[Any]:
        id_hash = _hash_state(session_id)
        nonce = secrets.token_urlsafe(32)
        row = await ctx.db.fetchrow(
            f"""update connect_sessions c set opened_at = now(), browser_hash = $2
               where id_hash = $1 and opened_at is null and expires_at > now() and {_ASKER_STILL_MANAGES}
               returning workspace_id, provider, return_url, integration_id""",
            id_hash,
            _hash_state(nonce),
        )
        if row is None:
            seen = await ctx.db.fetchrow(
                f"""select return_url, opened_at is not null as opened, {_ASKER_STILL_MANAGES} as token_valid
                   from connect_sessions c where id_hash = $1""",
                id_hash,
            )
            if seen is None:
                raise ApiError(404, "unknown_connect_session", "no connect session has this id")
            if not seen["token_valid"]:
                return _outcome(seen["return_url"], error="token_revoked")
            return _outcome(seen["return_url"], error="session_used" if seen["opened"] else "session_expired")
        try:
            app = app_for(row["provider"])
        except ApiError as exc:  # the app's settings went away since the session was made
            return _outcome(row["return_url"], error=exc.error)
        location = await start(request, app, row["workspace_id"], row["integration_id"], id_hash)
        return Redirect(location, status_code=302, cookies=[_browser_cookie(request, nonce, cookie_path)])

    @get(
        "/v1/oauth/{provider:str}/callback",
        summary="The provider sends the user back here",
        responses={
            303: ResponseSpec(None, description="a connect session's end: to return_url with status and error"),
            409: ResponseSpec(ErrorBody, description="the integration being reconnected was disabled meanwhile"),
            502: ResponseSpec(ErrorBody, description="the provider's token endpoint failed"),
        },
    )
    async def callback(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[Any]:
        app = app_for(provider)
        query = request.query_params  # ``state`` is a reserved parameter name in litestar
        state, code, error = query.get("state"), query.get("code"), query.get("error")
        cookie = request.cookies.get(COOKIE)
        browser = _hash_state(cookie) if cookie else None
        if not state:
            return await _refuse(browser, ApiError(400, "invalid_state", "state is missing"))
        state_hash = _hash_state(state)
        # A connect session's state completes only in the browser that opened the session: from
        # any other, it is refused and left for its own browser.
        row = await ctx.db.fetchrow(
            f"""delete from oauth_states s where state_hash = $1 and provider = $2
                 and (connect_session is null
                      or exists (select from connect_sessions c where c.id_hash = s.connect_session
                                 and c.browser_hash = $3))
               returning workspace_id, integration_id, redirect_uri, expires_at > now() as fresh, code_verifier,
                         (select return_url from connect_sessions c where c.id_hash = s.connect_session) as return_url,
                         (select {_ASKER_STILL_MANAGES} from connect_sessions c
                          where c.id_hash = s.connect_session) as token_valid""",
            state_hash,
            provider,
            browser,
        )
        if row is None:
            elsewhere = await ctx.db.fetchval(
                """select c.return_url from oauth_states s join connect_sessions c on c.id_hash = s.connect_session
                   where s.state_hash = $1 and s.provider = $2""",
                state_hash,
                provider,
            )
            if elsewhere is not None:
                log.warning("connect callback from another browser", provider=provider)
                return _outcome(elsewhere, error="browser_mismatch", clear=cookie_path)
            return await _refuse(
                browser, ApiError(400, "invalid_state", "unknown or already used state; start again from authorize")
            )
        return_url: str | None = row["return_url"]
        if row["token_valid"] is False:  # the manage token that asked was revoked since
            log.warning("connect session of a revoked token", provider=provider)
            return _outcome(str(return_url), error="token_revoked", clear=cookie_path)
        try:
            verifier = (
                None
                if row["code_verifier"] is None
                else ctx.cipher.decrypt(row["code_verifier"], "pkce:" + state_hash).decode()
            )
            view = await _complete(ctx, app, row, code, error, verifier, allowed_hosts)
        except ApiError as exc:
            if return_url is None:
                raise
            return _outcome(return_url, error=exc.error, clear=cookie_path)
        if return_url is None:
            return Response(view, status_code=200)
        return _outcome(return_url, integration_id=view.id, clear=cookie_path)

    async def _refuse(browser: str | None, exc: ApiError) -> Response[Any]:
        """A callback with no usable state: back to the connect session this browser opened, if
        any (the cookie names it), else the error as JSON."""
        if browser is not None:
            return_url = await ctx.db.fetchval(
                "select return_url from connect_sessions where browser_hash = $1", browser
            )
            if return_url is not None:
                return _outcome(return_url, error=exc.error, clear=cookie_path)
        raise exc

    return [
        Router(path="/", guards=[admin_guard(settings)], route_handlers=[authorize]),
        Router(path="/", route_handlers=[callback, create_connect_session, open_connect_session]),
    ]


async def _complete(
    ctx: GatewayContext,
    app: _oauth.OAuthApp,
    row: asyncpg.Record,
    code: str | None,
    error: str | None,
    verifier: str | None,
    allowed_hosts: tuple[AllowedHost, ...],
) -> IntegrationView:
    provider = app.provider
    if not row["fresh"]:
        raise ApiError(400, "expired_state", "the state expired; start again from authorize")
    if error:
        raise ApiError(400, "authorization_denied", f"{provider} answered {error[:100]}")
    if not code:
        raise ApiError(400, "invalid_request", "code is missing")
    if row["integration_id"] is not None:  # a reconnect: never of one disabled since its authorize
        status = await ctx.db.fetchval("select status from integrations where id = $1", row["integration_id"])
        if status is None or status == "erased":
            raise ApiError(404, "unknown_integration", "the integration was erased")
        if status == "disabled":
            raise _disabled()
    try:
        tokens = await _oauth.exchange_code(ctx.http, app, code, row["redirect_uri"], verifier)
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
    # The admin's authorize without an integration id keeps its rule (the workspace's OAuth
    # integration of this provider is reconnected); a connect session makes its own unless it named one.
    adopt = row["return_url"] is None
    integration_id = await _store(ctx, provider, row["workspace_id"], row["integration_id"], tokens, adopt=adopt)
    if provider == "fathom":
        await _register_webhook(ctx, integration_id, tokens.access_token)
    await ctx.changed(str(integration_id))
    view = await _integration_db.view(ctx.db, integration_id, ctx.settings.public_base_url)
    assert view is not None
    log.info("oauth connected", integration_id=view.id, provider=provider, workspace_id=view.workspace_id)
    return view


def _outcome(
    return_url: str, *, integration_id: str | None = None, error: str | None = None, clear: str | None = None
) -> Response[Any]:
    """The redirect a connect session ends with (``clear``: the path of its spent browser cookie, to clear)."""
    params = (
        {"status": "connected", "integration_id": integration_id}
        if error is None
        else {"status": "error", "error": error}
    )
    url = httpx.URL(return_url)
    location = str(url.copy_merge_params(params))
    cookies = [Cookie(key=COOKIE, value="", path=clear, max_age=0, httponly=True, samesite="lax")] if clear else []
    return Redirect(location, status_code=303, cookies=cookies)


def _browser_cookie(request: Request[Any, Any, Any], nonce: str, path: str) -> Cookie:
    # Secure everywhere but a developer's http://localhost (a Secure cookie is not set over http).
    plain_local = request.url.scheme == "http" and (request.url.hostname or "") in ("localhost", "127.0.0.1", "::1")
    return Cookie(
        key=COOKIE,
        value=nonce,
        path=path,  # sent to the callbacks only
        max_age=CONNECT_SESSION_SECONDS,
        httponly=True,
        secure=not plain_local,
        samesite="lax",  # the provider's redirect back is a top-level GET: Lax sends it
    )


async def _register_webhook(ctx: GatewayContext, integration_id: uuid.UUID, access_token: str) -> None:
    """Register a Fathom webhook for an OAuth integration that has none, as for an API-key one; the
    outcome is noted in its settings (``webhook_note``) when it cannot be done, and the
    integration is connected either way (it can still be pulled)."""
    row = await ctx.db.fetchrow("select webhook_id, base_url, settings from integrations where id = $1", integration_id)
    if row is None or row["webhook_id"] is not None:
        return
    stored: dict[str, Any] = dict(row["settings"] or {})
    public_base_url = stored.get("public_base_url") or ctx.settings.public_base_url
    note: str | None = None
    if not public_base_url:
        note = "no webhook registered: CALLSTREAM_GATEWAY_PUBLIC_BASE_URL is unset (pulls only)"
    else:
        key = str(integration_id)
        destination = public_base_url.rstrip("/") + f"/v1/webhooks/fathom/{key}"
        api_base = row["base_url"] or ctx.settings.fathom_api_url
        triggers = list(stored.get("triggered_for") or ctx.settings.fathom_triggered_for.split(","))
        try:
            registered = await _fathom_api.create_webhook(
                ctx.http, api_base, _fathom_api.auth_headers(access_token=access_token), destination, triggers
            )
        except _fathom_api.FathomApiError as exc:
            note = f"no webhook registered: {exc}"
        else:
            updated = await ctx.db.execute(
                """update integrations set webhook_id = $2, webhook_secret = $3, updated_at = now(),
                       settings = settings - 'webhook_note'
                   where id = $1 and webhook_id is null and status = 'active'""",
                integration_id,
                registered.id,
                seal_webhook_secret(ctx.cipher, key, registered.secret),
            )
            if updated == "UPDATE 0":  # disabled or given one meanwhile: leave nothing behind
                headers = _fathom_api.auth_headers(access_token=access_token)
                try:
                    await _fathom_api.delete_webhook(ctx.http, api_base, headers, registered.id)
                except _fathom_api.FathomApiError:
                    log.warning("fathom webhook left behind", integration_id=key)
            return
    log.warning("fathom oauth integration without webhook", integration_id=str(integration_id))
    await ctx.db.execute(
        """update integrations set settings = settings || jsonb_build_object('webhook_note', $2::text),
               updated_at = now() where id = $1""",
        integration_id,
        note,
    )


async def _store(
    ctx: GatewayContext,
    provider: str,
    workspace_id: str,
    integration_id: uuid.UUID | None,
    tokens: _oauth.TokenSet,
    *,
    adopt: bool,
) -> uuid.UUID:
    """Create the OAuth integration, or update the one being reconnected (or, with ``adopt``, the
    workspace's existing OAuth integration of this provider)."""
    credentials = Credentials(
        access_token=tokens.access_token, refresh_token=tokens.refresh_token, expires_at=tokens.expires_at
    )
    async with ctx.db.acquire() as conn, conn.transaction():
        target = integration_id
        if target is None and adopt:
            target = await conn.fetchval(
                """select id from integrations where workspace_id = $1 and provider = $2 and auth_kind = 'oauth'
                   and status not in ('disabled', 'erased') order by created_at limit 1 for update""",
                workspace_id,
                provider,
            )
        if target is not None:
            # auth_kind again: a state made before an API-key integration could not be named must not
            # turn it into an OAuth one now.
            status = await conn.fetchval(
                "select status from integrations where id = $1 and auth_kind = 'oauth' for update", target
            )
            if status is None or status == "erased":  # erased while its user was at the provider: never revived
                raise ApiError(404, "unknown_integration", "the integration was erased")
            if status == "disabled":  # disabled meanwhile: connecting does not quietly re-enable it
                raise _disabled()
            await conn.execute(
                """update integrations set credentials = $2, status = 'active', auth_kind = 'oauth',
                       base_url = coalesce($3, base_url), last_error = null, updated_at = now()
                   where id = $1""",
                target,
                seal_credentials(ctx.cipher, str(target), credentials),
                tokens.api_base_url,
            )
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
