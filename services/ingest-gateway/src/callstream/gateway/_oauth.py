"""OAuth 2.0 authorization-code apps of Fathom and Gong: the authorize URL, the code exchange and
the refresh. Only the HTTP to the token endpoint lives here; storing tokens is ``_integrations``.

Fathom sends client credentials in the form body (fathom.md §1.3). Gong authenticates the client
with HTTP Basic and takes ``grant_type`` and the rest on the query string, its documented shape
(gong.md §1.3), and returns the tenant's API host as ``api_base_url_for_customer``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

import httpx
import msgspec

from ._settings import Settings

Provider = Literal["fathom", "gong"]
PROVIDERS: tuple[Provider, ...] = ("fathom", "gong")


class OAuthError(Exception):
    """The token endpoint did not give us tokens. ``code`` is safe to show and to log."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class InvalidGrant(OAuthError):
    """The code or refresh token was refused for good (used, expired or revoked)."""


@dataclass(frozen=True, slots=True)
class OAuthApp:
    provider: Provider
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scopes: str
    pkce: bool = False  # send PKCE S256 (neither provider documents it: a setting turns it on)

    def authorization_url(self, redirect_uri: str, state: str, code_verifier: str | None = None) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": self.scopes,
            "state": state,
        }
        if code_verifier is not None:
            query["code_challenge"] = code_challenge(code_verifier)
            query["code_challenge_method"] = "S256"
        sep = "&" if "?" in self.authorize_url else "?"
        return self.authorize_url + sep + urlencode(query)


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    api_base_url: str | None = None


class _TokenResponse(msgspec.Struct):
    access_token: str
    refresh_token: str | None = None
    expires_in: float | None = None
    api_base_url_for_customer: str | None = None


class _ErrorResponse(msgspec.Struct):
    error: str | None = None


def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters of the unreserved set; 32 random bytes are 43 in base64url."""
    return secrets.token_urlsafe(32)


def code_challenge(code_verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode("ascii")).digest()).decode().rstrip("=")


async def exchange_code(
    http: httpx.AsyncClient, app: OAuthApp, code: str, redirect_uri: str, code_verifier: str | None = None
) -> TokenSet:
    params = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": app.client_id,
        "redirect_uri": redirect_uri,
    }
    if code_verifier is not None:
        params["code_verifier"] = code_verifier
    return await _token_request(http, app, params)


async def refresh(http: httpx.AsyncClient, app: OAuthApp, refresh_token: str) -> TokenSet:
    return await _token_request(http, app, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def _token_request(http: httpx.AsyncClient, app: OAuthApp, params: dict[str, str]) -> TokenSet:
    try:
        if app.provider == "gong":
            response = await http.post(
                app.token_url, params=params, auth=httpx.BasicAuth(app.client_id, app.client_secret)
            )
        else:
            form = {**params, "client_id": app.client_id, "client_secret": app.client_secret}
            response = await http.post(app.token_url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OAuthError("token_endpoint_unreachable", f"{app.provider} token endpoint: {type(exc).__name__}") from None
    return parse_token_response(app.provider, response.status_code, response.content)


def parse_token_response(provider: str, status: int, body: bytes, now: datetime | None = None) -> TokenSet:
    """Pure: a token endpoint answer → tokens, or the error it means."""
    if status >= 400:
        try:
            error = msgspec.json.decode(body, type=_ErrorResponse).error
        except msgspec.DecodeError:
            error = None
        if error == "invalid_grant":
            raise InvalidGrant("invalid_grant", f"{provider} refused the grant (used, expired or revoked)")
        raise OAuthError(
            "token_endpoint_error", f"{provider} token endpoint answered {status} ({error or 'no error code'})"
        )
    try:
        token = msgspec.json.decode(body, type=_TokenResponse)
    except msgspec.DecodeError:
        raise OAuthError("token_endpoint_error", f"{provider} token endpoint sent no usable tokens") from None
    if not token.access_token:
        raise OAuthError("token_endpoint_error", f"{provider} token endpoint sent an empty access token")
    now = now or datetime.now(UTC)
    expires_at = now + timedelta(seconds=token.expires_in) if token.expires_in and token.expires_in > 0 else None
    return TokenSet(token.access_token, token.refresh_token, expires_at, token.api_base_url_for_customer)


def apps_from_settings(settings: Settings) -> dict[str, OAuthApp]:
    """The OAuth apps whose client id and secret are configured."""
    apps: dict[str, OAuthApp] = {}
    if settings.fathom_client_id and settings.fathom_client_secret:
        apps["fathom"] = OAuthApp(
            "fathom",
            settings.fathom_client_id,
            settings.fathom_client_secret.get_secret_value(),
            settings.fathom_authorize_url,
            settings.fathom_token_url,
            settings.fathom_scopes,
            settings.fathom_pkce,
        )
    if settings.gong_client_id and settings.gong_client_secret:
        apps["gong"] = OAuthApp(
            "gong",
            settings.gong_client_id,
            settings.gong_client_secret.get_secret_value(),
            settings.gong_authorize_url,
            settings.gong_token_url,
            settings.gong_scopes,
            settings.gong_pkce,
        )
    return apps
