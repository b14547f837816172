"""The pull workers' own settings (``CALLSTREAM_GATEWAY_PULL_*``), read once at start.

Kept apart from the gateway's ``Settings`` so the pull workers and the webhook side can change
independently; provider hosts and the HTTP timeout still come from the gateway's settings.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream.runtime import load_settings


def _pull(name: str) -> str:
    return f"CALLSTREAM_GATEWAY_PULL_{name}"


class PullSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    concurrency: int = Field(4, ge=1, le=64, validation_alias=_pull("CONCURRENCY"), description="runs at once")
    slots_per_host: int = Field(
        0,
        ge=0,
        validation_alias=_pull("SLOTS_PER_HOST"),
        description="slots one provider host may hold while another host's request waits (0: all but one)",
    )
    lookahead: int = Field(
        0,
        ge=0,
        le=64,
        validation_alias=_pull("LOOKAHEAD"),
        description="requests a free slot may look through for one of a less busy host (0: CONCURRENCY)",
    )
    # Proactive limits, per provider account and shared by every run in the process. The bucket
    # holds one request, so no window of the provider's length ever sees more than the limit.
    limits_enabled: bool = Field(True, validation_alias=_pull("LIMITS_ENABLED"))
    limit_margin: float = Field(0.9, gt=0, le=1, validation_alias=_pull("LIMIT_MARGIN"))
    fathom_requests_per_window: int = Field(60, ge=1, validation_alias=_pull("FATHOM_REQUESTS_PER_WINDOW"))
    fathom_heavy_per_window: int = Field(30, ge=1, validation_alias=_pull("FATHOM_HEAVY_PER_WINDOW"))
    fathom_window_seconds: float = Field(60.0, gt=0, validation_alias=_pull("FATHOM_WINDOW_SECONDS"))
    gong_requests_per_second: float = Field(3.0, gt=0, validation_alias=_pull("GONG_REQUESTS_PER_SECOND"))
    gong_requests_per_day: int = Field(10_000, ge=1, validation_alias=_pull("GONG_REQUESTS_PER_DAY"))
    # Reactive: retries of 429, 5xx and timeouts.
    retry_attempts: int = Field(8, ge=1, le=50, validation_alias=_pull("RETRY_ATTEMPTS"))
    backoff_initial_seconds: float = Field(0.5, gt=0, validation_alias=_pull("BACKOFF_INITIAL_SECONDS"))
    backoff_max_seconds: float = Field(30.0, gt=0, validation_alias=_pull("BACKOFF_MAX_SECONDS"))
    max_retry_after_seconds: float = Field(
        120.0,
        gt=0,
        validation_alias=_pull("MAX_RETRY_AFTER_SECONDS"),
        description="a longer Retry-After (Gong's daily quota) releases the run to be redelivered later",
    )
    redeliver_delay_seconds: float = Field(30.0, gt=0, validation_alias=_pull("REDELIVER_DELAY_SECONDS"))
    # A run waiting for its provider holds no slot: a wait longer than this (a backoff, a
    # Retry-After, the account's pace when others share it) releases the run, redelivered when
    # it may go on. A pace wait of up to four of the account's intervals is still held: that is
    # the run's own work going at the provider's pace.
    hold_wait_seconds: float = Field(
        2.0,
        ge=0,
        validation_alias=_pull("HOLD_WAIT_SECONDS"),
        description="longest wait a run sleeps in its slot; a longer one releases the run",
    )
    defer_max_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=_pull("DEFER_MAX_SECONDS"),
        description="a run whose provider keeps failing is released for REDELIVER_DELAY, doubled each delivery up to this",
    )
    breaker_enabled: bool = Field(True, validation_alias=_pull("BREAKER_ENABLED"))
    breaker_failures: int = Field(
        5, ge=1, validation_alias=_pull("BREAKER_FAILURES"), description="failures in a row that open a host's breaker"
    )
    breaker_open_seconds: float = Field(
        30.0, gt=0, validation_alias=_pull("BREAKER_OPEN_SECONDS"), description="time between probes of a failing host"
    )
    breaker_open_max_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=_pull("BREAKER_OPEN_MAX_SECONDS"),
        description="each failed probe doubles the time open, up to this",
    )
    breaker_probe_timeout_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=_pull("BREAKER_PROBE_TIMEOUT_SECONDS"),
        description="a probe that has not reported by then is replaced by another",
    )
    slice_seconds: float = Field(
        3.0,
        ge=0,
        validation_alias=_pull("SLICE_SECONDS"),
        description="a backfill, range or incremental run gives its slot up after this long when other requests wait, and resumes from its checkpoint (0: never)",
    )
    slice_yield_seconds: float = Field(
        1.0,
        ge=0,
        validation_alias=_pull("SLICE_YIELD_SECONDS"),
        description="how long a run that gave its slot up (or a parked request given back) stays out, so the waiting requests are taken first",
    )
    park_max_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_pull("PARK_MAX_SECONDS"),
        description="a fetched request no local slot took in this long is given back, for another replica to take",
    )
    max_failures: int = Field(
        20,
        ge=1,
        validation_alias=_pull("MAX_FAILURES"),
        description="failed deliveries of a run before it gives up with an error (time slices and give-backs do not count)",
    )
    restart_wait_seconds: float = Field(
        30.0,
        ge=0,
        validation_alias=_pull("RESTART_WAIT_SECONDS"),
        description="a pull worker restarted after a broker error first waits this long at most for its runs to checkpoint",
    )
    heartbeat_seconds: float = Field(
        20.0, gt=0, validation_alias=_pull("HEARTBEAT_SECONDS"), description="in-progress acks keep the run's lease"
    )
    gong_history_start: datetime = Field(
        datetime.fromisoformat("2010-01-01T00:00:00+00:00"),
        validation_alias=_pull("GONG_HISTORY_START"),
        description="fromDateTime of a Gong backfill (Gong wants both ends of a window)",
    )
    expired_cursor_restarts: int = Field(3, ge=0, validation_alias=_pull("EXPIRED_CURSOR_RESTARTS"))
    checkpoint_bucket: str = Field("gateway_pull_checkpoints", validation_alias=_pull("CHECKPOINT_BUCKET"))
    checkpoint_ttl_days: float = Field(7.0, gt=0, validation_alias=_pull("CHECKPOINT_TTL_DAYS"))
    pace_kv_timeout_seconds: float = Field(
        0.5,
        gt=0,
        validation_alias=_pull("PACE_KV_TIMEOUT_SECONDS"),
        description="an account's short-window pace is kept in the quota bucket; slower than this, a replica paces alone",
    )
    pace_fallback_share: float = Field(
        0.5,
        gt=0,
        le=1,
        validation_alias=_pull("PACE_FALLBACK_SHARE"),
        description="share of an account's short-window limit one replica takes while the bucket cannot be reached",
    )
    quota_bucket: str = Field(
        "gateway_pull_quota",
        validation_alias=_pull("QUOTA_BUCKET"),
        description="JetStream KV bucket where every replica counts an account's requests of the day",
    )


def load_pull_settings() -> PullSettings:
    return load_settings(PullSettings, "callstream-gateway")
