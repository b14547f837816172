"""Integration credentials as the pull workers use them, with OAuth refresh.

``IntegrationStore.access`` decrypts an integration's credentials (refreshing an OAuth token that
expires within the margin); ``IntegrationStore.refreshed`` is what a worker calls after a 401.

One refresh at a time per integration across every replica: the refresh runs inside a transaction
holding ``SELECT ... FOR UPDATE`` on the integration's row, and stores the new tokens (refresh tokens
are single use) in that same transaction. A second caller waits for the lock, then sees that the
token it holds is no longer the stored one and takes the new token without asking the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg
import httpx

from callstream.runtime import get_logger

from . import _oauth
from ._credentials import Credentials, open_credentials, seal_credentials
from ._crypto import Cipher
from ._gauges import TOKEN_REFRESHES
from ._outbound import DEFAULT_ALLOWED_API_HOSTS, AllowedHost, UrlNotAllowed, check_api_url, parse_allowed_hosts
from ._settings import Settings

log = get_logger(__name__)

DEFAULT_REFRESH_MARGIN = timedelta(minutes=5)

# A pool, or a function returning one (a service's pool exists only once the service has started).
PoolSource: TypeAlias = asyncpg.Pool | Callable[[], asyncpg.Pool]


@dataclass(frozen=True, slots=True)
class IntegrationAccess:
    id: str
    workspace_id: str
    provider: str  # "fathom" | "gong"
    status: str  # "active" | "disabled" | "reauth_required" | "erased"
    auth_kind: str  # "api_key" | "basic" | "oauth"
    base_url: str | None  # provider API host override (Gong per-tenant host; fakes in tests)
    api_key: str | None = None  # Fathom API key
    access_key: str | None = None  # Gong Basic
    access_key_secret: str | None = None
    access_token: str | None = None  # OAuth
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # secrets stay out of tracebacks and logs
        return (
            f"IntegrationAccess(id={self.id!r}, workspace_id={self.workspace_id!r}, provider={self.provider!r}, "
            f"status={self.status!r}, auth_kind={self.auth_kind!r}, base_url={self.base_url!r})"
        )


class HostNotAllowed(Exception):
    """The integration's stored API host is not (or no longer) on the allow-list: no credentials are
    sent there. Rows stored before the list existed, or after it was narrowed, end here."""


class ReauthRequired(Exception):
    """The provider refused the refresh token for good; a person must connect the integration again.
    The integration's status is already ``reauth_required`` when this is raised."""

    def __init__(self, integration_id: str, detail: str) -> None:
        super().__init__(f"integration {integration_id} needs to be connected again: {detail}")
        self.integration_id = integration_id
        self.detail = detail


class RefreshFailed(Exception):
    """The refresh did not happen for a reason that may pass (token endpoint down, 5xx, no OAuth app
    configured); the stored tokens are unchanged, so a later attempt can succeed."""


class UnknownIntegration(LookupError):
    pass


_SELECT = """
select id::text, workspace_id, provider, status, auth_kind, base_url, credentials
from integrations where id = $1
"""


def _as_uuid(integration_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(integration_id)
    except (ValueError, TypeError, AttributeError):
        return None


class IntegrationStore:
    """Built from an asyncpg pool and the cipher (plus the OAuth apps, for refreshing)."""

    def __init__(
        self,
        pool: PoolSource,
        cipher: Cipher,
        *,
        oauth_apps: Mapping[str, _oauth.OAuthApp] | None = None,
        http: httpx.AsyncClient | None = None,
        refresh_margin: timedelta = DEFAULT_REFRESH_MARGIN,
        allowed_api_hosts: Sequence[AllowedHost] | None = None,
    ) -> None:
        self._pool_source = pool
        self._cipher = cipher
        self._apps = dict(oauth_apps or {})
        self._http = http
        self._own_http = http is None
        self._margin = refresh_margin
        self._allowed_hosts = tuple(
            parse_allowed_hosts(DEFAULT_ALLOWED_API_HOSTS) if allowed_api_hosts is None else allowed_api_hosts
        )

    @classmethod
    def from_settings(
        cls, pool: asyncpg.Pool, settings: Settings, *, http: httpx.AsyncClient | None = None
    ) -> IntegrationStore:
        return cls(
            pool,
            settings.cipher(),
            oauth_apps=_oauth.apps_from_settings(settings),
            http=http,
            refresh_margin=timedelta(seconds=settings.oauth_refresh_margin_seconds),
            allowed_api_hosts=settings.api_host_allow_list(),
        )

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def _pool(self) -> asyncpg.Pool:
        source = self._pool_source
        return source if isinstance(source, asyncpg.Pool) else source()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(20.0))
        return self._http

    def _access(self, row: Mapping[str, Any]) -> IntegrationAccess:
        creds = open_credentials(self._cipher, row["id"], row["credentials"])
        return IntegrationAccess(
            id=row["id"],
            workspace_id=row["workspace_id"],
            provider=row["provider"],
            status=row["status"],
            auth_kind=row["auth_kind"],
            base_url=row["base_url"],
            api_key=creds.api_key,
            access_key=creds.access_key,
            access_key_secret=creds.access_key_secret,
            access_token=creds.access_token,
            expires_at=creds.expires_at,
        )

    def _expiring(self, expires_at: datetime | None) -> bool:
        return expires_at is not None and expires_at - datetime.now(UTC) <= self._margin

    def _checked_host(self, api_base_url: str | None) -> tuple[str | None, str | None]:
        """(the host to store, or None to keep the stored one; the problem to record, if any)."""
        if api_base_url is None:
            return None, None
        try:
            return check_api_url(api_base_url, self._allowed_hosts, "api_base_url_for_customer"), None
        except UrlNotAllowed as exc:
            return None, f"refresh kept the stored API host: {exc}"

    async def status(self, integration_id: str) -> str | None:
        """The integration's status alone (a pull run asks before each page), ``None`` if unknown."""
        key = _as_uuid(integration_id)
        if key is None:
            return None
        status: str | None = await self._pool.fetchval("select status from integrations where id = $1", key)
        return status

    async def access(self, integration_id: str) -> IntegrationAccess | None:
        """The integration's credentials, ``None`` if there is no such integration. An active OAuth
        integration whose token expires within the margin is refreshed first. Raises
        :class:`HostNotAllowed` when its API host is off the allow-list."""
        key = _as_uuid(integration_id)
        if key is None:
            return None
        row = await self._pool.fetchrow(_SELECT, key)
        if row is None:
            return None
        found = self._access(row)
        if found.base_url is not None:
            try:
                check_api_url(found.base_url, self._allowed_hosts)
            except UrlNotAllowed as exc:
                raise HostNotAllowed(str(exc)) from None
        if found.auth_kind == "oauth" and found.status == "active" and self._expiring(found.expires_at):
            return await self.refreshed(integration_id, None)
        return found

    async def refreshed(self, integration_id: str, stale_access_token: str | None) -> IntegrationAccess:
        """Fresh credentials after ``stale_access_token`` was refused (or, with ``None``, because the
        token is about to expire). Refreshes unless another caller already did."""
        key = _as_uuid(integration_id)
        if key is None:
            raise UnknownIntegration(integration_id)
        refused: _oauth.InvalidGrant | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SELECT + " for update", key)
            if row is None:
                raise UnknownIntegration(integration_id)
            current = self._access(row)
            if current.auth_kind != "oauth" or current.status in ("disabled", "erased"):
                return current
            if current.status == "reauth_required":
                raise ReauthRequired(integration_id, "the provider refused the last refresh; connect again")
            if stale_access_token is not None and current.access_token != stale_access_token:
                return current  # another caller refreshed while we waited for the lock
            if stale_access_token is None and not self._expiring(current.expires_at):
                return current
            creds = open_credentials(self._cipher, current.id, row["credentials"])
            app = self._apps.get(current.provider)
            if app is None:
                raise RefreshFailed(f"no OAuth app is configured for {current.provider}")
            if not creds.refresh_token:
                refused = _oauth.InvalidGrant("invalid_grant", "no refresh token is stored")
            else:
                try:
                    tokens = await _oauth.refresh(self._client(), app, creds.refresh_token)
                except _oauth.InvalidGrant as exc:
                    refused = exc
                except _oauth.OAuthError as exc:
                    TOKEN_REFRESHES.labels(current.provider, "failed").inc()
                    log.warning("oauth refresh failed", integration_id=integration_id, error=exc.code)
                    raise RefreshFailed(exc.detail) from None
            if refused is not None:
                TOKEN_REFRESHES.labels(current.provider, "refused").inc()
                await conn.execute(
                    "update integrations set status = 'reauth_required', last_error = $2, updated_at = now()"
                    " where id = $1",
                    key,
                    f"{refused.code}: {refused.detail}",
                )
            else:
                new = Credentials(
                    access_token=tokens.access_token,
                    # Some servers omit the refresh token when it does not rotate; keep the old one then.
                    refresh_token=tokens.refresh_token or creds.refresh_token,
                    expires_at=tokens.expires_at,
                )
                api_base_url, problem = self._checked_host(tokens.api_base_url)
                if problem:
                    # The new tokens must be kept (the old refresh token is spent); the host is not.
                    log.warning("oauth refresh named an api host that is not allowed", integration_id=integration_id)
                await conn.execute(
                    "update integrations set credentials = $2, base_url = coalesce($3, base_url), last_error = $4,"
                    " updated_at = now() where id = $1",
                    key,
                    seal_credentials(self._cipher, current.id, new),
                    api_base_url,
                    problem,
                )
                TOKEN_REFRESHES.labels(current.provider, "refreshed").inc()
                log.info("oauth token refreshed", integration_id=integration_id, provider=current.provider)
                row = await conn.fetchrow(_SELECT, key)
                return self._access(row)
        log.warning("oauth refresh refused, reauth required", integration_id=integration_id)
        raise ReauthRequired(integration_id, refused.detail)
