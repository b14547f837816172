"""When to pull and over which window: pure arithmetic over times, free of I/O.

Regular runs fall on a grid, ``anchor + k * cadence``, so a scheduler that was away does not
drift; the incremental window is ``[watermark - lookback, now - delay)``; the watermark moves only
when a run succeeds over a window that starts at or before it (so no gap can open); failures are
retried after ``base * 2^(n-1)``, never later than one cadence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from callstream.contracts import Source, SyncMode, TimeWindow

Trigger = Literal["schedule", "manual", "reconcile"]

MIN_CADENCE_SECONDS = 60
MAX_CADENCE_SECONDS = 7 * 86_400
MAX_LATEST_LIMIT = 1_000


class PlanError(ValueError):
    """A manual request that cannot be turned into a run (bad mode arguments)."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    mode: SyncMode
    trigger: Trigger
    window: TimeWindow
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    default_cadence_seconds: int = 3600
    delay_seconds: int = 300
    lookback_seconds: Mapping[str, int] = field(default_factory=lambda: {"fathom": 86_400, "gong": 3 * 86_400})
    first_sync_seconds: int = 14 * 86_400
    stale_after_seconds: int = 600
    backoff_base_seconds: int = 60
    retention_seconds: int = 30 * 86_400
    # Per provider: how often a reconciling run re-reads the recent past, and how far back. Gong
    # for CRM re-association and late transcripts; Fathom for edits (titles, late summaries, action
    # items), which it sends no webhook for and has no ``updated_at`` to filter on (fathom.md).
    reconcile_every_seconds: Mapping[str, int] = field(
        default_factory=lambda: {"fathom": 7 * 86_400, "gong": 7 * 86_400}
    )
    reconcile_seconds: Mapping[str, int] = field(default_factory=lambda: {"fathom": 14 * 86_400, "gong": 14 * 86_400})

    def cadence(self, integration_settings: Mapping[str, Any] | None) -> timedelta:
        """``integrations.settings.cadence_seconds`` when it is a sane whole number, else the default."""
        raw = (integration_settings or {}).get("cadence_seconds")
        seconds = self.default_cadence_seconds
        if isinstance(raw, int | float | str) and not isinstance(raw, bool):
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if MIN_CADENCE_SECONDS <= value <= MAX_CADENCE_SECONDS:
                seconds = value
        return timedelta(seconds=seconds)

    def incremental_window(self, provider: Source, watermark: datetime | None, now: datetime) -> TimeWindow:
        end = now - timedelta(seconds=self.delay_seconds)
        if watermark is None:
            start = now - timedelta(seconds=self.first_sync_seconds)
        else:
            start = watermark - timedelta(seconds=self.lookback_seconds[provider])
        return TimeWindow(start=min(start, end), end=end)

    def reconcile_window(self, provider: Source, now: datetime) -> TimeWindow:
        return TimeWindow(
            start=now - timedelta(seconds=self.reconcile_seconds[provider]),
            end=now - timedelta(seconds=self.delay_seconds),
        )

    def retry_delay(self, consecutive_failures: int, cadence: timedelta) -> timedelta:
        exponent = max(consecutive_failures - 1, 0)
        # Beyond 2^30 the cap applies anyway; keep the float small.
        seconds = self.backoff_base_seconds * math.pow(2, min(exponent, 30))
        return min(timedelta(seconds=seconds), cadence)

    def stale_before(self, now: datetime) -> datetime:
        """Active runs with no sign of life since this moment are failed."""
        return now - timedelta(seconds=self.stale_after_seconds)

    def retention_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.retention_seconds)

    def next_reconcile(self, provider: Source, now: datetime) -> datetime:
        return now + timedelta(seconds=self.reconcile_every_seconds[provider])

    def manual_plan(
        self,
        *,
        mode: SyncMode,
        provider: Source,
        watermark: datetime | None,
        now: datetime,
        start: datetime | None,
        end: datetime | None,
        limit: int | None,
    ) -> RunPlan:
        if mode == "incremental":
            if start is not None or end is not None or limit is not None:
                raise PlanError("incremental takes no from, to or limit; its window follows the watermark")
            return RunPlan(mode, "manual", self.incremental_window(provider, watermark, now))
        if mode == "backfill":
            if start is not None or limit is not None:
                raise PlanError("backfill reads all history; it takes at most 'to'")
            return RunPlan(mode, "manual", TimeWindow(start=None, end=end or now))
        if mode == "range":
            if start is None:
                raise PlanError("range needs 'from'")
            end = end or now
            if start >= end:
                raise PlanError("'from' must be before 'to'")
            if limit is not None:
                raise PlanError("range takes no limit")
            return RunPlan(mode, "manual", TimeWindow(start=start, end=end))
        # latest: the newest N calls, a safe first test of an integration
        if limit is None or not 1 <= limit <= MAX_LATEST_LIMIT:
            raise PlanError(f"latest needs a limit between 1 and {MAX_LATEST_LIMIT}")
        if start is not None or end is not None:
            raise PlanError("latest takes no window")
        return RunPlan(mode, "manual", TimeWindow(), limit)


def next_on_grid(anchor: datetime, now: datetime, cadence: timedelta) -> datetime:
    """The first ``anchor + k * cadence`` strictly after ``now``."""
    if now < anchor:
        return anchor
    steps = (now - anchor) // cadence + 1
    return anchor + steps * cadence


def advanced_watermark(
    old: datetime | None,
    *,
    mode: SyncMode,
    window: TimeWindow,
    reported: datetime | None,
) -> datetime | None:
    """The watermark after a run over ``window`` succeeded.

    The run's own report (``SyncFinished.watermark``) wins when it is earlier than the window's end
    (a run that stopped at a limit). A window that starts after the watermark leaves a gap behind
    it, so it does not move the watermark; neither does ``latest`` (it has no window).
    """
    if mode == "latest" or window.end is None:
        return old
    end = window.end if reported is None else min(reported, window.end)
    if old is None:
        return end
    if window.start is not None and window.start > old:
        return old
    return max(old, end)


RunStatus = Literal["success", "error", "reauth_required"]


@dataclass(frozen=True, slots=True)
class StateAfterRun:
    """What a finished run changes in its integration's sync state."""

    status: Literal["success", "error", "reauth_required"]
    watermark: datetime | None
    consecutive_failures: int
    next_due_at: datetime
    next_reconcile_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None
    reauth_at: datetime | None


@dataclass(frozen=True, slots=True)
class StateBefore:
    watermark: datetime | None
    consecutive_failures: int
    next_due_at: datetime
    next_reconcile_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None


def state_after_run(
    policy: Policy,
    before: StateBefore,
    *,
    outcome: RunStatus,
    mode: SyncMode,
    trigger: Trigger,
    window: TimeWindow,
    reported_watermark: datetime | None,
    error: str | None,
    finished_at: datetime,
    cadence: timedelta,
    now: datetime,
) -> StateAfterRun:
    if outcome == "success":
        return StateAfterRun(
            status="success",
            watermark=advanced_watermark(before.watermark, mode=mode, window=window, reported=reported_watermark),
            consecutive_failures=0,
            next_due_at=before.next_due_at,
            next_reconcile_at=before.next_reconcile_at,
            last_synced_at=finished_at,
            last_error=None,
            reauth_at=None,
        )
    if outcome == "reauth_required":
        # Nothing is scheduled until the integration is re-authorised (see the due query).
        return StateAfterRun(
            status="reauth_required",
            watermark=before.watermark,
            consecutive_failures=before.consecutive_failures + 1,
            next_due_at=before.next_due_at,
            next_reconcile_at=before.next_reconcile_at,
            last_synced_at=before.last_synced_at,
            last_error=error or "the provider refused the credentials",
            reauth_at=now,
        )
    failures = before.consecutive_failures + 1
    retry_at = now + policy.retry_delay(failures, cadence)
    next_due, next_reconcile = before.next_due_at, before.next_reconcile_at
    if trigger == "reconcile":
        next_reconcile = retry_at
    else:
        next_due = min(next_due, retry_at)
    return StateAfterRun(
        status="error",
        watermark=before.watermark,
        consecutive_failures=failures,
        next_due_at=next_due,
        next_reconcile_at=next_reconcile,
        last_synced_at=before.last_synced_at,
        last_error=error or "the run failed without a reason",
        reauth_at=None,
    )
