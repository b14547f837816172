"""Window, cadence, backoff and watermark arithmetic, with explicit times (no clock, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callstream.contracts import TimeWindow
from callstream.scheduler import Policy, advanced_watermark, next_on_grid
from callstream.scheduler._policy import PlanError, StateAfterRun, StateBefore, state_after_run

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
policy = Policy()


def test_cadence_defaults_to_hourly_and_reads_integration_settings() -> None:
    assert policy.cadence(None) == HOUR
    assert policy.cadence({}) == HOUR
    assert policy.cadence({"cadence_seconds": 900}) == timedelta(minutes=15)
    assert policy.cadence({"cadence_seconds": "1800"}) == timedelta(minutes=30)


@pytest.mark.parametrize("bad", [True, -5, 0, 59, "soon", None, [3600], 8 * 86_400])
def test_cadence_ignores_nonsense(bad: object) -> None:
    assert policy.cadence({"cadence_seconds": bad}) == HOUR


def test_incremental_window_uses_provider_lookback_and_delay() -> None:
    watermark = NOW - 2 * HOUR
    gong = policy.incremental_window("gong", watermark, NOW)
    fathom = policy.incremental_window("fathom", watermark, NOW)
    assert gong == TimeWindow(start=watermark - timedelta(days=3), end=NOW - timedelta(minutes=5))
    assert fathom == TimeWindow(start=watermark - timedelta(days=1), end=NOW - timedelta(minutes=5))


def test_first_window_without_watermark_reaches_back_first_sync_days() -> None:
    window = policy.incremental_window("fathom", None, NOW)
    assert window == TimeWindow(start=NOW - timedelta(days=14), end=NOW - timedelta(minutes=5))


def test_window_never_inverts() -> None:
    future_watermark = NOW + timedelta(days=10)
    window = policy.incremental_window("fathom", future_watermark, NOW)
    assert window.start == window.end == NOW - timedelta(minutes=5)


def test_grid_keeps_its_phase_after_downtime() -> None:
    anchor = datetime(2026, 3, 1, 0, 7, tzinfo=UTC)
    assert next_on_grid(anchor, anchor - timedelta(minutes=1), HOUR) == anchor
    assert next_on_grid(anchor, anchor, HOUR) == anchor + HOUR
    later = anchor + 5 * HOUR + timedelta(minutes=30)  # the scheduler was away for hours
    assert next_on_grid(anchor, later, HOUR) == anchor + 6 * HOUR


@given(
    offset=st.integers(min_value=0, max_value=10**8),
    cadence=st.integers(min_value=60, max_value=7 * 86_400),
)
def test_grid_is_strictly_after_now_and_within_one_cadence(offset: int, cadence: int) -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    now = anchor + timedelta(seconds=offset)
    step = timedelta(seconds=cadence)
    due = next_on_grid(anchor, now, step)
    assert now < due <= now + step
    assert (due - anchor) % step == timedelta(0)


def test_backoff_doubles_up_to_the_cadence() -> None:
    delays = [policy.retry_delay(n, HOUR) for n in range(1, 9)]
    assert [d.total_seconds() for d in delays] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.retry_delay(10_000, HOUR) == HOUR


def test_watermark_moves_to_the_window_end_when_contiguous() -> None:
    old = NOW - 2 * HOUR
    window = TimeWindow(start=old - timedelta(days=1), end=NOW - timedelta(minutes=5))
    assert advanced_watermark(old, mode="incremental", window=window, reported=None) == window.end
    assert advanced_watermark(None, mode="incremental", window=window, reported=None) == window.end


def test_watermark_takes_an_earlier_report_but_never_one_past_the_window() -> None:
    old = NOW - 2 * HOUR
    window = TimeWindow(start=old - HOUR, end=NOW)
    assert advanced_watermark(old, mode="range", window=window, reported=NOW - HOUR) == NOW - HOUR
    assert advanced_watermark(old, mode="range", window=window, reported=NOW + HOUR) == NOW


def test_watermark_does_not_jump_a_gap_or_go_back() -> None:
    old = NOW - 2 * HOUR
    after_gap = TimeWindow(start=old + HOUR, end=NOW)
    assert advanced_watermark(old, mode="range", window=after_gap, reported=None) == old
    older = TimeWindow(start=old - 5 * HOUR, end=old - 4 * HOUR)
    assert advanced_watermark(old, mode="range", window=older, reported=None) == old
    assert advanced_watermark(old, mode="latest", window=TimeWindow(), reported=None) == old
    backfill = TimeWindow(start=None, end=NOW)
    assert advanced_watermark(old, mode="backfill", window=backfill, reported=None) == NOW


def _before(**kw: object) -> StateBefore:
    base: dict[str, object] = {
        "watermark": NOW - HOUR,
        "consecutive_failures": 0,
        "next_due_at": NOW + HOUR,
        "next_reconcile_at": NOW + timedelta(days=3),
        "last_synced_at": NOW - HOUR,
        "last_error": None,
    }
    base.update(kw)
    return StateBefore(**base)  # type: ignore[arg-type]


def _after(before: StateBefore, outcome: str, trigger: str = "schedule") -> StateAfterRun:
    return state_after_run(
        policy,
        before,
        outcome=outcome,  # type: ignore[arg-type]
        mode="incremental",
        trigger=trigger,  # type: ignore[arg-type]
        window=TimeWindow(start=NOW - timedelta(days=1), end=NOW - timedelta(minutes=5)),
        reported_watermark=None,
        error="boom" if outcome != "success" else None,
        finished_at=NOW,
        cadence=HOUR,
        now=NOW,
    )


def test_success_moves_watermark_and_clears_failures() -> None:
    after = _after(_before(consecutive_failures=3, last_error="old"), "success")
    assert after.status == "success"
    assert after.watermark == NOW - timedelta(minutes=5)
    assert after.consecutive_failures == 0
    assert after.last_error is None
    assert after.last_synced_at == NOW


def test_failure_keeps_watermark_and_retries_with_backoff() -> None:
    after = _after(_before(consecutive_failures=2), "error")
    assert after.status == "error"
    assert after.watermark == NOW - HOUR
    assert after.consecutive_failures == 3
    assert after.next_due_at == NOW + timedelta(minutes=4)
    assert after.last_error == "boom"


def test_failure_never_postpones_a_sooner_regular_run() -> None:
    after = _after(_before(consecutive_failures=9, next_due_at=NOW + timedelta(minutes=10)), "error")
    assert after.next_due_at == NOW + timedelta(minutes=10)


def test_failed_reconcile_retries_the_reconcile_not_the_incremental() -> None:
    before = _before()
    after = _after(before, "error", trigger="reconcile")
    assert after.next_due_at == before.next_due_at
    assert after.next_reconcile_at == NOW + timedelta(minutes=1)


def test_reauth_required_is_recorded() -> None:
    after = _after(_before(), "reauth_required")
    assert after.status == "reauth_required"
    assert after.reauth_at == NOW
    assert after.watermark == NOW - HOUR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "range", "start": None, "end": None, "limit": None}, "needs 'from'"),
        ({"mode": "range", "start": NOW, "end": NOW - HOUR, "limit": None}, "before"),
        ({"mode": "latest", "start": None, "end": None, "limit": None}, "limit"),
        ({"mode": "latest", "start": None, "end": None, "limit": 5000}, "limit"),
        ({"mode": "incremental", "start": NOW, "end": None, "limit": None}, "watermark"),
        ({"mode": "backfill", "start": None, "end": None, "limit": 3}, "all history"),
    ],
)
def test_manual_plan_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        policy.manual_plan(provider="gong", watermark=None, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_manual_plans() -> None:
    latest = policy.manual_plan(
        mode="latest", provider="fathom", watermark=None, now=NOW, start=None, end=None, limit=5
    )
    assert (latest.mode, latest.window, latest.limit) == ("latest", TimeWindow(), 5)
    ranged = policy.manual_plan(
        mode="range", provider="gong", watermark=None, now=NOW, start=NOW - HOUR, end=None, limit=None
    )
    assert ranged.window == TimeWindow(start=NOW - HOUR, end=NOW)
    backfill = policy.manual_plan(
        mode="backfill", provider="gong", watermark=None, now=NOW, start=None, end=None, limit=None
    )
    assert backfill.window == TimeWindow(start=None, end=NOW)
