"""The console's settings: the shared ones plus its own ``CALLSTREAM_CONSOLE_*`` variables.

The console keeps no data: it needs no database and no NATS, only the four services' addresses and
the admin tokens it calls them with (``CALLSTREAM_CONSOLE_<SERVICE>_TOKEN``: named for the console,
so that no other service's environment ever carries them, as ``own_env`` keeps each service's own
``CALLSTREAM_<SERVICE>_ADMIN_TOKEN`` to itself). People sign in with ``CALLSTREAM_CONSOLE_ADMIN_TOKEN``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from callstream.runtime import AdminToken, AdminTokenSecret, ServiceSettings, load_settings

DEFAULT_PORT = 8084
DEFAULT_BACKEND_TIMEOUT_SECONDS = 10.0
DEFAULT_SESSION_HOURS = 12.0
SESSION_SECRET_MIN_LENGTH = 32


def _console(name: str) -> str:
    return f"CALLSTREAM_CONSOLE_{name}"


def _long_secret(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < SESSION_SECRET_MIN_LENGTH:
        raise ValueError(f"must be at least {SESSION_SECRET_MIN_LENGTH} characters long")
    return value


SessionSecret = Annotated[SecretStr, AfterValidator(_long_secret)]


class Settings(ServiceSettings):
    # Not used: the console reads no table and no stream (declared again only to drop "required").
    database_url: SecretStr = Field(SecretStr(""), description="not used by the console")
    nats_url: str = Field("", description="not used by the console")

    console_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias=_console("PORT"))
    admin_token: AdminTokenSecret | None = Field(
        None,
        validation_alias=_console("ADMIN_TOKEN"),
        description="the operators' sign-in token (at least 32 characters); unset, only workspace manage tokens sign in",
    )
    session_secret: SessionSecret | None = Field(
        None,
        validation_alias=_console("SESSION_SECRET"),
        description="key of the session and CSRF cookies (at least 32 characters); unset, a random one per process",
    )
    session_hours: float = Field(DEFAULT_SESSION_HOURS, gt=0, le=24 * 30, validation_alias=_console("SESSION_HOURS"))
    secure_cookies: bool = Field(
        False, validation_alias=_console("SECURE_COOKIES"), description="send cookies over https only"
    )
    gateway_url: str = Field("http://127.0.0.1:8080", validation_alias=_console("GATEWAY_URL"))
    scheduler_url: str = Field("http://127.0.0.1:8083", validation_alias=_console("SCHEDULER_URL"))
    normalizer_url: str = Field("http://127.0.0.1:8082", validation_alias=_console("NORMALIZER_URL"))
    linker_url: str = Field("http://127.0.0.1:8081", validation_alias=_console("LINKER_URL"))
    gateway_token: SecretStr | None = Field(None, validation_alias=_console("GATEWAY_TOKEN"))
    scheduler_token: SecretStr | None = Field(None, validation_alias=_console("SCHEDULER_TOKEN"))
    normalizer_token: SecretStr | None = Field(None, validation_alias=_console("NORMALIZER_TOKEN"))
    linker_token: SecretStr | None = Field(None, validation_alias=_console("LINKER_TOKEN"))
    public_url: str | None = Field(
        None,
        validation_alias=_console("PUBLIC_URL"),
        description="the console's address as a browser reaches it (connect sessions return there);"
        " unset, http://127.0.0.1:<port>",
    )
    backend_timeout_seconds: float = Field(
        DEFAULT_BACKEND_TIMEOUT_SECONDS, gt=0, validation_alias=_console("BACKEND_TIMEOUT_SECONDS")
    )

    @property
    def service_name(self) -> str:
        return "console"

    @property
    def port(self) -> int:
        return self.console_port

    def public_base(self) -> str:
        """Where a browser reaches the console (connect sessions end at its /integrations/connected)."""
        return (self.public_url or f"http://127.0.0.1:{self.console_port}").rstrip("/")

    def admin(self) -> AdminToken:
        """The operators' sign-in token (``None``: sign-in is closed)."""
        return AdminToken(self.admin_token, _console("ADMIN_TOKEN"))

    def cookie_key(self) -> bytes:
        """32 bytes for the session cookie's AES-GCM (and the CSRF token's HMAC), from the setting."""
        secret = self.session_secret.get_secret_value() if self.session_secret else secrets.token_urlsafe(32)
        return hashlib.sha256(b"callstream-console-session\0" + secret.encode()).digest()


def load() -> Settings:
    return load_settings(Settings, "callstream-console")
