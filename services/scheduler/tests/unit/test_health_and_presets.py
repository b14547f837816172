"""The pure parts of health and presets: each check's verdict and reason, each preset's window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callstream.scheduler._health import judge
from callstream.scheduler._policy import PlanError
from callstream.scheduler._presets import resolve

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "provider": "fathom", "integration_status": "active", "webhook_registered": True,
        "has_webhook_secret": True, "active_moved_at": None,
        "sync_status": "success", "next_due_at": NOW + HOUR, "last_synced_at": NOW - HOUR, "last_error": None,
        "items_synced_total": 12, "active_id": None, "active_status": None, "active_created_at": None,
        "last_id": uuid.uuid4(), "last_status": "success", "last_error_run": None, "last_finished_at": NOW - HOUR,
    }  # fmt: skip
    row.update(changes)
    return row


def _failing(row: dict[str, Any]) -> dict[str, str]:
    health = judge(row, now=NOW, stuck_after=2 * HOUR)
    return {c.name: c.reason for c in health.checks if not c.ok}


def test_a_healthy_integration() -> None:
    health = judge(_row(), now=NOW, stuck_after=2 * HOUR)
    assert health.healthy
    assert [c.name for c in health.checks][-1] == "webhook_registered"


def test_each_failure_says_why() -> None:
    assert _failing(_row(integration_status="disabled")) == {
        "connected": "the integration is disabled",
        "schedule_active": "nothing is scheduled while the integration is disabled",
    }
    assert _failing(_row(sync_status="reauth_required", last_status="reauth_required", last_error_run="refresh refused")) == {
        "credentials_valid": "fathom refused the credentials: connect the integration again",
        "last_run_ok": "the last run ended reauth_required: refresh refused",
        "schedule_active": "nothing is scheduled until the integration is connected again",
    }  # fmt: skip
    assert _failing(_row(last_status="error", last_error_run="gong refused the credentials (HTTP 403)")) == {
        "credentials_valid": "the last run failed: gong refused the credentials (HTTP 403)",
        "last_run_ok": "the last run ended error: gong refused the credentials (HTTP 403)",
    }
    # An error that is not about credentials fails only the last run.
    assert set(_failing(_row(last_status="error", last_error_run="Fathom answered 503"))) == {"last_run_ok"}
    assert _failing(_row(next_due_at=None))["schedule_active"].startswith("not scheduled yet")
    assert _failing(
        _row(active_id="r1", active_status="queued", active_created_at=NOW - 3 * HOUR, active_moved_at=NOW - 3 * HOUR)
    ) == {"sync_ready": "run r1 has been queued for 3 h (more than 2 h)"}
    assert "webhook_registered" not in [c.name for c in judge(_row(provider="gong"), now=NOW, stuck_after=HOUR).checks]


def test_presets() -> None:
    def window(**kw: Any) -> tuple[Any, ...]:
        w = resolve(mode=kw.get("mode"), days=kw.get("days"), start=None, end=None, limit=kw.get("limit"), now=NOW)
        return (w.mode, w.start, w.end, w.limit)

    assert window(days=30) == ("range", NOW - timedelta(days=30), NOW, None)
    assert window(mode="range", days=1) == ("range", NOW - timedelta(days=1), NOW, None)
    assert window(mode="latest", limit=5) == ("latest", None, None, 5)  # checked by the policy
    for bad in ({}, {"days": 3651}, {"days": 7, "mode": "incremental"}, {"days": 7, "limit": 1}):
        with pytest.raises(PlanError):
            window(**bad)


def _sync_ready(**active: Any) -> tuple[bool, str]:
    health = judge(_row(active_id="r1", **active), now=NOW, stuck_after=2 * HOUR)
    return next((c.ok, c.reason) for c in health.checks if c.name == "sync_ready")


def test_a_long_backfill_that_keeps_moving_is_ready() -> None:
    """A healthy backfill (50k Fathom meetings at the heavy-request limit) runs for many hours: what
    makes it stuck is no progress for longer than the bound, not its age."""
    assert _sync_ready(active_status="running", active_created_at=NOW - 9 * HOUR, active_moved_at=NOW - 30 * MINUTE) == (
        True, "run r1 is running since 9 h, last moved 30 min ago"
    )  # fmt: skip
    assert _sync_ready(active_status="running", active_created_at=NOW - 9 * HOUR, active_moved_at=NOW - 3 * HOUR) == (
        False, "run r1 is running but has not moved for 3 h (more than 2 h)"
    )  # fmt: skip
    # A run waiting on purpose (Retry-After, a spent daily quota) until later is not stuck.
    assert _sync_ready(active_status="running", active_created_at=NOW - 9 * HOUR, active_moved_at=NOW + 5 * HOUR) == (
        True, f"run r1 is running since 9 h, waiting until {(NOW + 5 * HOUR).isoformat()}"
    )  # fmt: skip
    # A queued run is judged by when it was queued.
    assert _sync_ready(active_status="queued", active_created_at=NOW - 5 * MINUTE, active_moved_at=NOW - 5 * MINUTE) == (
        True, "run r1 is queued since 5 min"
    )  # fmt: skip


def test_a_webhook_secret_given_by_hand_or_a_registered_webhook_is_a_webhook() -> None:
    """An integration created with a webhook secret given by hand (the webhook registered in Fathom
    outside callstream) has a secret and no webhook id: Fathom's meetings still arrive."""

    def webhook(**changes: Any) -> tuple[bool, str]:
        health = judge(_row(**changes), now=NOW, stuck_after=2 * HOUR)
        return next((c.ok, c.reason) for c in health.checks if c.name == "webhook_registered")

    assert webhook(webhook_registered=True, has_webhook_secret=True) == (
        True, "the gateway registered a webhook with Fathom: new meetings arrive as they are ready"
    )  # fmt: skip
    assert webhook(webhook_registered=False, has_webhook_secret=True) == (
        True, "a webhook secret was given (the webhook registered outside callstream): the gateway verifies"
        " the new meetings Fathom sends"
    )  # fmt: skip
    assert webhook(webhook_registered=False, has_webhook_secret=False) == (
        False, "no webhook secret and no registered webhook: new meetings arrive only with the scheduled pulls"
    )  # fmt: skip
