"""The scheduler's settings: the shared ones plus its own ``CALLSTREAM_SCHEDULER_*`` variables."""

from __future__ import annotations

from pydantic import Field

from callstream.runtime import AdminToken, AdminTokenSecret, ServiceSettings, load_settings

from ._policy import Policy

DEFAULT_PORT = 8083
_DAY = 86_400
ADMIN_TOKEN_VARIABLE = "CALLSTREAM_SCHEDULER_ADMIN_TOKEN"  # noqa: S105 - the name of a variable


class Settings(ServiceSettings):
    scheduler_port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CALLSTREAM_SCHEDULER_PORT")
    admin_token: AdminTokenSecret = Field(
        validation_alias=ADMIN_TOKEN_VARIABLE,
        description="bearer token of the scheduler's admin API (at least 32 characters)",
    )
    loop_seconds: float = Field(5.0, gt=0, le=60, validation_alias="CALLSTREAM_SCHEDULER_LOOP_SECONDS")
    cadence_seconds: int = Field(3600, ge=60, validation_alias="CALLSTREAM_SCHEDULER_CADENCE_SECONDS")
    delay_seconds: int = Field(300, ge=0, validation_alias="CALLSTREAM_SCHEDULER_DELAY_SECONDS")
    fathom_lookback_seconds: int = Field(_DAY, ge=0, validation_alias="CALLSTREAM_SCHEDULER_FATHOM_LOOKBACK_SECONDS")
    gong_lookback_seconds: int = Field(3 * _DAY, ge=0, validation_alias="CALLSTREAM_SCHEDULER_GONG_LOOKBACK_SECONDS")
    first_sync_days: int = Field(14, ge=1, validation_alias="CALLSTREAM_SCHEDULER_FIRST_SYNC_DAYS")
    stale_after_seconds: int = Field(600, ge=10, validation_alias="CALLSTREAM_SCHEDULER_STALE_AFTER_SECONDS")
    backoff_base_seconds: int = Field(60, ge=1, validation_alias="CALLSTREAM_SCHEDULER_BACKOFF_BASE_SECONDS")
    retention_days: int = Field(30, ge=1, validation_alias="CALLSTREAM_SCHEDULER_RETENTION_DAYS")
    # Gong's reconciliation (the names predate Fathom's, so they carry no provider).
    reconcile_every_days: int = Field(7, ge=1, validation_alias="CALLSTREAM_SCHEDULER_RECONCILE_EVERY_DAYS")
    reconcile_days: int = Field(14, ge=1, validation_alias="CALLSTREAM_SCHEDULER_RECONCILE_DAYS")
    fathom_reconcile_every_days: int = Field(
        7, ge=1, validation_alias="CALLSTREAM_SCHEDULER_FATHOM_RECONCILE_EVERY_DAYS"
    )
    fathom_reconcile_days: int = Field(14, ge=1, validation_alias="CALLSTREAM_SCHEDULER_FATHOM_RECONCILE_DAYS")
    # Progress streams (``…/syncs/{run_id}/events``): how often the watched runs are read (one query
    # for all of them), and how many streams one process keeps open.
    progress_poll_seconds: float = Field(
        1.0, gt=0, le=30, validation_alias="CALLSTREAM_SCHEDULER_PROGRESS_POLL_SECONDS"
    )
    progress_max_watchers: int = Field(1000, ge=1, validation_alias="CALLSTREAM_SCHEDULER_PROGRESS_MAX_WATCHERS")
    progress_stored_grace_seconds: float = Field(
        10.0,
        ge=0,
        validation_alias="CALLSTREAM_SCHEDULER_PROGRESS_STORED_GRACE_SECONDS",
        description="how long a run's progress stream waits after the run ended for the normalizer to"
        " report every published call stored (a call published twice is stored once)",
    )
    # Health: a run queued longer than this, or running without progress this long, is stuck
    # (``sync_ready`` fails); a long backfill that keeps moving is not.
    health_stuck_after_seconds: int = Field(
        7200, ge=60, validation_alias="CALLSTREAM_SCHEDULER_HEALTH_STUCK_AFTER_SECONDS"
    )

    @property
    def service_name(self) -> str:
        return "scheduler"

    @property
    def port(self) -> int:
        return self.scheduler_port

    def admin(self) -> AdminToken:
        return AdminToken(self.admin_token, ADMIN_TOKEN_VARIABLE)

    def policy(self) -> Policy:
        return Policy(
            default_cadence_seconds=self.cadence_seconds,
            delay_seconds=self.delay_seconds,
            lookback_seconds={"fathom": self.fathom_lookback_seconds, "gong": self.gong_lookback_seconds},
            first_sync_seconds=self.first_sync_days * _DAY,
            stale_after_seconds=self.stale_after_seconds,
            backoff_base_seconds=self.backoff_base_seconds,
            retention_seconds=self.retention_days * _DAY,
            reconcile_every_seconds={
                "fathom": self.fathom_reconcile_every_days * _DAY,
                "gong": self.reconcile_every_days * _DAY,
            },
            reconcile_seconds={"fathom": self.fathom_reconcile_days * _DAY, "gong": self.reconcile_days * _DAY},
        )


def load() -> Settings:
    return load_settings(Settings, "callstream-scheduler")
