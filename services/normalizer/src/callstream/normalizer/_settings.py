"""The normalizer's settings: the shared ones plus its own ``CALLSTREAM_NORMALIZER_*`` variables."""

from __future__ import annotations

from pydantic import Field, field_validator

from callstream.contracts import DEFAULT_LINK_HOSTS, HostAllowList
from callstream.runtime import AdminToken, AdminTokenSecret, ServiceSettings, load_settings

DEFAULT_PORT = 8082
ADMIN_TOKEN_VARIABLE = "CALLSTREAM_NORMALIZER_ADMIN_TOKEN"  # noqa: S105 - the variable's name
MIB = 1024 * 1024
# Raw calls held at once, fetched and not yet committed. Mapping and writing a meeting costs ~13
# times its size at its peak (measured: ~5.6x while mapped, ~9x more while asyncpg encodes it), so
# this bounds the process's memory (tests/integration/test_normalizer_memory.py). The gateway's body
# limit: whatever arrives, a process never needs more than for one largest meeting, which it must
# afford anyway (~300 MB). 100 calls of 20 KB are 2 MB: the common case never reaches it.
DEFAULT_FETCH_MAX_BYTES = 16 * MIB
# NATS cuts a connection whose unread output passes the server's max_pending (64 MiB by default) as
# a slow consumer: a pull must never ask for more than that while the process is busy mapping.
MAX_FETCH_MAX_BYTES = 48 * MIB


class Settings(ServiceSettings):
    normalizer_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_NORMALIZER_PORT")
    batch_size: int = Field(
        100, ge=1, le=1000, validation_alias="CALLSTREAM_NORMALIZER_BATCH_SIZE", description="raw calls per transaction"
    )
    store_concurrency: int = Field(
        3,
        ge=1,
        le=16,
        validation_alias="CALLSTREAM_NORMALIZER_STORE_CONCURRENCY",
        description="batches written at once while behind (full batches), each in its own transaction and connection",
    )
    fetch_max_bytes: int = Field(
        DEFAULT_FETCH_MAX_BYTES,
        ge=64 * 1024,
        le=MAX_FETCH_MAX_BYTES,
        validation_alias="CALLSTREAM_NORMALIZER_FETCH_MAX_BYTES",
        description="raw-call bytes fetched and not yet stored at once (memory); a larger raw call is handled alone",
    )
    fetch_timeout_seconds: float = Field(1.0, gt=0, validation_alias="CALLSTREAM_NORMALIZER_FETCH_TIMEOUT_SECONDS")
    retry_base_seconds: float = Field(
        1.0, gt=0, validation_alias="CALLSTREAM_NORMALIZER_RETRY_BASE_SECONDS", description="first nak delay"
    )
    retry_max_seconds: float = Field(60.0, gt=0, validation_alias="CALLSTREAM_NORMALIZER_RETRY_MAX_SECONDS")
    outbox_batch_size: int = Field(500, ge=1, le=10_000, validation_alias="CALLSTREAM_NORMALIZER_OUTBOX_BATCH_SIZE")
    outbox_sweep_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias="CALLSTREAM_NORMALIZER_OUTBOX_SWEEP_SECONDS",
        description="how often the relay looks for rows without a notification",
    )
    outbox_retention_hours: float = Field(24.0, gt=0, validation_alias="CALLSTREAM_NORMALIZER_OUTBOX_RETENTION_HOURS")
    link_sweep_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="CALLSTREAM_NORMALIZER_LINK_SWEEP_SECONDS",
        description="how often feature links still waiting for their message are retried",
    )
    rederive_seconds: float = Field(
        300.0,
        ge=0,
        validation_alias="CALLSTREAM_NORMALIZER_REDERIVE_SECONDS",
        description="how often stored messages of an older metadata shape are looked for and re-derived"
        " from their raw data (0: never; `callstream-normalizer rederive` does it once)",
    )
    retention_seconds: float = Field(
        3600.0,
        ge=0,
        validation_alias="CALLSTREAM_NORMALIZER_RETENTION_SECONDS",
        description="how often messages older than their workspace's retention are made tombstones"
        " (0: never; `callstream-normalizer retention` does it once)",
    )
    retention_batch_size: int = Field(
        500,
        ge=1,
        le=10_000,
        validation_alias="CALLSTREAM_NORMALIZER_RETENTION_BATCH_SIZE",
        description="per transaction",
    )
    erasure_pause_ratio: float = Field(
        1.0,
        ge=0,
        le=100,
        validation_alias="CALLSTREAM_NORMALIZER_ERASURE_PAUSE_RATIO",
        description="after each batch of an erasure, pause this many times as long as the batch took:"
        " one tenant's erasure leaves the database and the cores to the others' reads (0: no pause)",
    )
    admin_token: AdminTokenSecret | None = Field(
        None,
        validation_alias=ADMIN_TOKEN_VARIABLE,
        description="bearer token of the normalizer's admin API (workspace retention; at least 32 characters);"
        " unset: the admin API answers 401",
    )
    pool_size: int = Field(5, ge=2, le=100, validation_alias="CALLSTREAM_NORMALIZER_POOL_SIZE")
    # The linker's variable: MessageUpserted's link fields pass the rule the linker's answers do.
    link_hosts: str = Field(
        ",".join(DEFAULT_LINK_HOSTS),
        validation_alias="CALLSTREAM_LINK_HOSTS",
        description="hosts links may point at, comma-separated; *.example.com for every host below it",
    )

    @field_validator("link_hosts")
    @classmethod
    def _valid_hosts(cls, value: str) -> str:
        HostAllowList.parse(value)
        return value

    @property
    def link_allow_list(self) -> HostAllowList:
        return HostAllowList.parse(self.link_hosts)

    def admin(self) -> AdminToken:
        return AdminToken(self.admin_token, ADMIN_TOKEN_VARIABLE)

    @property
    def service_name(self) -> str:
        return "normalizer"

    @property
    def port(self) -> int:
        return self.normalizer_port


def load() -> Settings:
    return load_settings(Settings, "callstream-normalizer")
