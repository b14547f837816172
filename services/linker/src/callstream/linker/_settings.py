"""The linker's settings: the shared ones plus its own ``CALLSTREAM_LINKER_*`` variables.

``CALLSTREAM_LINKER_ADMIN_TOKEN`` is the linker's own admin token (no other service's opens it);
``CALLSTREAM_LINK_HOSTS`` is the link host allow list, comma-separated (``*.`` for every host below a
domain).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from callstream.runtime import AdminToken, AdminTokenSecret, HttpServer, ServiceSettings, load_settings

from ._links import DEFAULT_LINK_HOSTS, HostAllowList

DEFAULT_PORT = 8081
# A client that sends tokens nobody knows costs a query each: a mistyped token retried is fine, a
# scan is refused with 429 (by client address: behind a proxy, every client shares its address).
DEFAULT_UNKNOWN_TOKEN_RATE = 1.0
DEFAULT_UNKNOWN_TOKEN_BURST = 30


def _linker(name: str) -> str:
    return f"CALLSTREAM_LINKER_{name}"


class Settings(ServiceSettings):
    linker_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias=_linker("PORT"))
    # Small answers at a high rate: granian serves them at about twice uvicorn's rate with a
    # tighter tail on this workload (bench/linker reports both servers).
    http_server: HttpServer = Field("granian", validation_alias=_linker("HTTP_SERVER"))
    linker_database_url: SecretStr | None = Field(
        None,
        validation_alias=_linker("DATABASE_URL"),
        description="where reads go (e.g. a read replica, as a read-only role); default CALLSTREAM_DATABASE_URL",
    )
    admin_token: AdminTokenSecret | None = Field(
        None,
        validation_alias=_linker("ADMIN_TOKEN"),
        description="bearer token that reads every workspace and changes feature links (at least 32 characters)",
    )
    link_hosts: str = Field(
        ",".join(DEFAULT_LINK_HOSTS),
        validation_alias="CALLSTREAM_LINK_HOSTS",
        description="hosts links may point at, comma-separated; *.example.com for every host below it",
    )
    pool_max: int = Field(10, ge=1, le=200, validation_alias=_linker("POOL_MAX"))
    cache_entries: int = Field(
        100_000, ge=0, validation_alias=_linker("CACHE_ENTRIES"), description="hot links kept in memory; 0 = off"
    )
    cache_max_age_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=_linker("CACHE_MAX_AGE_SECONDS"),
        description="a backstop only: entries are dropped on MessageUpserted events as they arrive",
    )
    token_cache_seconds: float = Field(
        5.0,
        ge=0,
        validation_alias=_linker("TOKEN_CACHE_SECONDS"),
        description="how long a token lookup is reused (a revoked token stops working within this)",
    )
    unknown_token_rate: float = Field(
        DEFAULT_UNKNOWN_TOKEN_RATE,
        gt=0,
        validation_alias=_linker("UNKNOWN_TOKEN_RATE"),
        description="look-ups of unknown bearer tokens each client may make per second (then 429)",
    )
    unknown_token_burst: int = Field(
        DEFAULT_UNKNOWN_TOKEN_BURST,
        ge=1,
        validation_alias=_linker("UNKNOWN_TOKEN_BURST"),
        description="unknown bearer tokens a client may try at once before the rate applies",
    )

    @field_validator("link_hosts")
    @classmethod
    def _valid_hosts(cls, value: str) -> str:
        HostAllowList.parse(value)
        return value

    def admin(self) -> AdminToken:
        return AdminToken(self.admin_token, _linker("ADMIN_TOKEN"))

    @property
    def allowed_hosts(self) -> HostAllowList:
        return HostAllowList.parse(self.link_hosts)

    @property
    def read_database_url(self) -> str:
        chosen = self.linker_database_url or self.database_url
        return chosen.get_secret_value()

    @property
    def service_name(self) -> str:
        return "linker"

    @property
    def port(self) -> int:
        return self.linker_port


def load() -> Settings:
    return load_settings(Settings, "callstream-linker")
