"""The ingest-gateway's settings: the shared ones plus its own ``CALLSTREAM_GATEWAY_*`` variables.

``CALLSTREAM_SECRET_KEY`` keeps the name ``./dev up`` writes; the admin token is the gateway's own
(``CALLSTREAM_GATEWAY_ADMIN_TOKEN``): no other service's token opens its admin API.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from callstream.runtime import AdminToken, AdminTokenSecret, ServiceSettings, load_settings

from ._crypto import Cipher, KeyRingError, parse_key_ring
from ._outbound import DEFAULT_ALLOWED_API_HOSTS, AllowedHost, parse_allowed_hosts, parse_return_hosts

DEFAULT_PORT = 8080
MIB = 1024 * 1024


def _gateway(name: str) -> str:
    return f"CALLSTREAM_GATEWAY_{name}"


class Settings(ServiceSettings):
    gateway_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias=_gateway("PORT"))
    admin_token: AdminTokenSecret | None = Field(
        None,
        validation_alias=_gateway("ADMIN_TOKEN"),
        description="bearer token of the gateway's admin API (at least 32 characters); unset = closed",
    )
    secret_key: SecretStr = Field(
        validation_alias="CALLSTREAM_SECRET_KEY",
        description="keyid:base64urlkey[,keyid:base64urlkey...]; the first encrypts, all decrypt",
    )

    # Webhooks
    max_body: int = Field(16 * MIB, ge=1024, validation_alias=_gateway("MAX_BODY"))
    webhook_tolerance_seconds: int = Field(300, ge=1, validation_alias=_gateway("WEBHOOK_TOLERANCE_SECONDS"))
    publish_timeout_seconds: float = Field(5.0, gt=0, validation_alias=_gateway("PUBLISH_TIMEOUT_SECONDS"))
    retry_after_seconds: int = Field(5, ge=1, validation_alias=_gateway("RETRY_AFTER_SECONDS"))
    secret_cache_ttl_seconds: float = Field(30.0, gt=0, validation_alias=_gateway("SECRET_CACHE_TTL_SECONDS"))
    erasure_resume_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias=_gateway("ERASURE_RESUME_SECONDS"),
        description="an erasure job whose announcement did not complete (a crash, the broker away) is "
        "announced again by the gateway after this long, and looked for this often",
    )

    # Where providers reach us (webhook destinations, OAuth redirect URIs).
    public_base_url: str | None = Field(None, validation_alias=_gateway("PUBLIC_BASE_URL"))

    # Provider hosts (overridable per integration with base_url, and in tests).
    fathom_api_url: str = Field("https://api.fathom.ai/external/v1", validation_alias=_gateway("FATHOM_API_URL"))
    gong_api_url: str = Field("https://api.gong.io", validation_alias=_gateway("GONG_API_URL"))
    allowed_api_hosts: str = Field(
        DEFAULT_ALLOWED_API_HOSTS,
        validation_alias=_gateway("ALLOWED_API_HOSTS"),
        description="hosts an integration's base_url (and Gong's api_base_url_for_customer) may name: "
        "host, *.suffix or IP, optional :port; https only unless spelled http://host",
    )
    fathom_triggered_for: str = Field(
        "my_recordings,shared_external_recordings",
        validation_alias=_gateway("FATHOM_TRIGGERED_FOR"),
        description="default triggered_for of webhooks the gateway registers (comma-separated)",
    )
    provider_timeout_seconds: float = Field(20.0, gt=0, validation_alias=_gateway("PROVIDER_TIMEOUT_SECONDS"))

    # OAuth apps
    fathom_client_id: str | None = Field(None, validation_alias=_gateway("FATHOM_CLIENT_ID"))
    fathom_client_secret: SecretStr | None = Field(None, validation_alias=_gateway("FATHOM_CLIENT_SECRET"))
    fathom_authorize_url: str = Field(
        "https://fathom.video/external/v1/oauth2/authorize", validation_alias=_gateway("FATHOM_AUTHORIZE_URL")
    )
    fathom_token_url: str = Field(
        "https://fathom.video/external/v1/oauth2/token", validation_alias=_gateway("FATHOM_TOKEN_URL")
    )
    fathom_scopes: str = Field("public_api", validation_alias=_gateway("FATHOM_SCOPES"))
    gong_client_id: str | None = Field(None, validation_alias=_gateway("GONG_CLIENT_ID"))
    gong_client_secret: SecretStr | None = Field(None, validation_alias=_gateway("GONG_CLIENT_SECRET"))
    gong_authorize_url: str = Field(
        "https://app.gong.io/oauth2/authorize", validation_alias=_gateway("GONG_AUTHORIZE_URL")
    )
    gong_token_url: str = Field(
        "https://app.gong.io/oauth2/generate-customer-token", validation_alias=_gateway("GONG_TOKEN_URL")
    )
    gong_scopes: str = Field(
        "api:calls:read:basic api:calls:read:extensive api:calls:read:transcript",
        validation_alias=_gateway("GONG_SCOPES"),
    )
    fathom_pkce: bool = Field(
        False,
        validation_alias=_gateway("FATHOM_PKCE"),
        description="send PKCE S256 in Fathom's OAuth (its docs and SDKs do not use it; turn on if the app accepts it)",
    )
    gong_pkce: bool = Field(
        False,
        validation_alias=_gateway("GONG_PKCE"),
        description="send PKCE S256 in Gong's OAuth (Gong's documented flow has none; Nango disables it)",
    )
    return_url_allow: str = Field(
        "",
        validation_alias=_gateway("RETURN_URL_ALLOW"),
        description="hosts a connect session's return_url may name: host, *.suffix or IP, optional :port; "
        "https only, http://localhost or http://127.0.0.1 for development; unset = no connect sessions",
    )
    oauth_state_ttl_seconds: int = Field(600, ge=30, validation_alias=_gateway("OAUTH_STATE_TTL_SECONDS"))
    oauth_refresh_margin_seconds: int = Field(300, ge=0, validation_alias=_gateway("OAUTH_REFRESH_MARGIN_SECONDS"))

    @field_validator("secret_key")
    @classmethod
    def _key_ring_is_readable(cls, value: SecretStr) -> SecretStr:
        try:
            parse_key_ring(value.get_secret_value())
        except KeyRingError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_api_hosts")
    @classmethod
    def _allow_list_is_readable(cls, value: str) -> str:
        parse_allowed_hosts(value)  # a ValueError names the bad entry
        return value

    @field_validator("return_url_allow")
    @classmethod
    def _return_list_is_readable(cls, value: str) -> str:
        parse_return_hosts(value)
        return value

    def return_url_allow_list(self) -> tuple[AllowedHost, ...]:
        return parse_return_hosts(self.return_url_allow)

    def api_host_allow_list(self) -> tuple[AllowedHost, ...]:
        return parse_allowed_hosts(self.allowed_api_hosts)

    @property
    def service_name(self) -> str:
        return "ingest-gateway"

    @property
    def port(self) -> int:
        return self.gateway_port

    def admin(self) -> AdminToken:
        return AdminToken(self.admin_token, _gateway("ADMIN_TOKEN"))

    def cipher(self) -> Cipher:
        return Cipher.from_setting(self.secret_key.get_secret_value())


def load() -> Settings:
    return load_settings(Settings, "callstream-gateway")
