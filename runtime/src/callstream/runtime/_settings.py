"""Settings shared by every service, read once from ``CALLSTREAM_*`` variables.

A service subclasses :class:`ServiceSettings`, names its own variables with ``validation_alias``
(``CALLSTREAM_GATEWAY_PORT``), and calls :func:`load_settings` once at start. A bad or missing
variable exits with status 2 and one line that names it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._limits import (
    DEFAULT_HTTP_BODY_TIMEOUT_SECONDS,
    DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS,
    DEFAULT_HTTP_MAX_CONNECTIONS,
    HttpLimits,
)

ENV_PREFIX = "CALLSTREAM_"
# The one admin token every service once shared: no longer read, and refused so that a deployment
# still setting it learns at start that each service now has its own (CALLSTREAM_<SERVICE>_ADMIN_TOKEN).
RETIRED_ADMIN_TOKEN = "CALLSTREAM_ADMIN_TOKEN"  # noqa: S105 - the name of a variable
HttpServer = Literal["uvicorn", "granian"]

DEFAULT_SHUTDOWN_SECONDS = 20.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_WORKER_GRACE_SECONDS = 30.0
DEFAULT_WORKER_RESTART_MAX_SECONDS = 30.0


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore", frozen=True, populate_by_name=False
    )

    database_url: SecretStr = Field(description="PostgreSQL DSN, e.g. postgresql://user@host:5432/callstream")
    nats_url: str = Field(description="NATS server URLs, comma-separated for a cluster")
    # The service's own NATS identity (contracts' nats_permissions); without a user, the URL's
    # user:password@ if any (an operator tool's way).
    nats_user: str | None = Field(None, description="NATS user of this service (e.g. gateway)")
    nats_password: SecretStr | None = Field(None, description="its password (prefer CALLSTREAM_NATS_PASSWORD_FILE)")
    nats_password_file: Path | None = Field(None, description="file holding the NATS password (a mounted secret)")
    nats_tls_ca: Path | None = Field(None, description="CA bundle to verify the NATS server with (turns TLS on)")
    nats_tls_cert: Path | None = Field(None, description="client certificate for NATS TLS (mutual TLS)")
    nats_tls_key: Path | None = Field(None, description="its private key")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON unless standard error is a terminal"
    )
    host: str = Field("127.0.0.1", description="address the HTTP server binds")
    shutdown_seconds: float = Field(DEFAULT_SHUTDOWN_SECONDS, gt=0)
    http_server: HttpServer = Field(
        "uvicorn", description="uvicorn (httptools), or granian's embedded server (HTTP in Rust threads)"
    )
    http_header_timeout_seconds: float = Field(
        DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS,
        gt=0,
        description="a connection that has not sent a request's headers within this is closed",
    )
    http_body_timeout_seconds: float = Field(
        DEFAULT_HTTP_BODY_TIMEOUT_SECONDS,
        gt=0,
        description="a request whose body has not arrived within this after its headers is dropped",
    )
    http_max_connections: int = Field(
        DEFAULT_HTTP_MAX_CONNECTIONS, ge=1, description="open HTTP connections per process; more wait or get 503"
    )
    connect_timeout_seconds: float = Field(DEFAULT_CONNECT_TIMEOUT_SECONDS, gt=0)
    stream_replicas: int = Field(1, ge=1, le=5, description="replicas for streams this service creates")
    worker_grace_seconds: float = Field(
        DEFAULT_WORKER_GRACE_SECONDS, gt=0, description="a background worker down this long makes /health/ready 503"
    )
    worker_restart_max_seconds: float = Field(
        DEFAULT_WORKER_RESTART_MAX_SECONDS, gt=0, description="longest wait before a failed worker is restarted"
    )

    retired_admin_token: SecretStr | None = Field(None, validation_alias=RETIRED_ADMIN_TOKEN, exclude=True)

    @field_validator("retired_admin_token")
    @classmethod
    def _shared_admin_token_is_gone(cls, value: SecretStr | None) -> None:
        if value is not None:
            raise ValueError(
                "is no longer read: each service has its own admin token, CALLSTREAM_<SERVICE>_ADMIN_TOKEN "
                "(e.g. CALLSTREAM_SCHEDULER_ADMIN_TOKEN); unset it"
            )

    @property
    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_seconds=self.http_header_timeout_seconds,
            body_timeout_seconds=self.http_body_timeout_seconds,
            max_connections=self.http_max_connections,
        )

    @property
    def service_name(self) -> str:  # overridden by each service
        return "callstream"

    @property
    def port(self) -> int:  # overridden by each service
        raise NotImplementedError


S = TypeVar("S", bound=BaseSettings)


def _variable_name(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    return name.upper() if name.upper().startswith(ENV_PREFIX) else ENV_PREFIX + name.upper()


def load_settings(cls: type[S], prog: str) -> S:
    """Build the settings once; on a bad variable print one line naming it and exit 2."""
    try:
        return cls()
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "missing":
            what = "is required"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            what = str(err["ctx"]["error"])  # our own message, which may name other variables
        else:
            what = err["msg"].lower()
        print(f"{prog}: {_variable_name(err['loc'])} {what}", file=sys.stderr)
        raise SystemExit(2) from None
