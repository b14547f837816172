"""What the pages show, decided without I/O: an integration's status as a word and a tone, times
relative with their absolute UTC, the sync presets' request bodies, a run's duration."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ATTENTION_WORDS",
    "LIST_STATUSES",
    "PRESETS",
    "WORD_TONES",
    "Status",
    "absolute",
    "as_datetime",
    "call_length",
    "duration",
    "integration_status",
    "relative",
    "run_status",
]


@dataclass(frozen=True, slots=True)
class Status:
    word: str  # what a person reads ("needs reconnect")
    tone: str  # the colour class: ok, busy, bad, warn, off
    hint: str = ""  # what it means and what to do


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def absolute(value: Any) -> str:
    moment = as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 45:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def relative(value: Any, now: datetime | None = None) -> str:
    """``4 min ago`` / ``in 2 h``; empty for no time."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    delta = ((now or datetime.now(tz=UTC)) - moment).total_seconds()
    if abs(delta) < 5:
        return "just now"
    return f"{_span(delta)} ago" if delta > 0 else f"in {_span(delta)}"


def duration(start: Any, end: Any, now: datetime | None = None) -> str:
    first = as_datetime(start)
    if first is None:
        return ""
    last = as_datetime(end) or now or datetime.now(tz=UTC)
    seconds = max((last - first).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{int(seconds)} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def call_length(seconds: Any) -> str:
    """A call's length as people say it: ``45 s``, ``42 min``, ``1 h 5 min``; empty when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
        return ""
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = math.floor(seconds / 60 + 0.5)  # half up: 150 s is 3 min (round() says 2, half to even)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


# The words an integration's status can be, and each one's colour as ``integration_status`` gives it
# (the overview's counts; the list's filter, in this order).
WORD_TONES = {
    "healthy": "ok",
    "syncing": "busy",
    "failing": "bad",
    "needs reconnect": "bad",
    "not synced yet": "warn",
    "disabled": "off",
    "erased": "off",
}
LIST_STATUSES = tuple(WORD_TONES)
# The words of the rows the overview may list (a syncing one only when its run is stuck).
ATTENTION_WORDS = ("syncing", "failing", "needs reconnect")

_RECONNECT = Status("needs reconnect", "bad", "the provider refused the credentials: add the integration again")


def _refused(health: dict[str, Any] | None) -> str | None:
    """The reason of a failing ``credentials_valid`` check (the provider answered 401/403)."""
    for check in (health or {}).get("checks", []):
        if check.get("name") == "credentials_valid" and not check.get("ok"):
            return str(check.get("reason") or "the provider refused the credentials")
    return None


def integration_status(
    integration: dict[str, Any], state: dict[str, Any] | None, health: dict[str, Any] | None = None
) -> Status:
    """The gateway's status first (it knows first when credentials stop working), then the
    scheduler's health check of the credentials (a run refused with 401/403), then its view of the
    syncs."""
    gateway = integration.get("status")
    if gateway == "erased":
        return Status("erased", "off", "everything of it was erased; nothing is taken or synced")
    if gateway == "disabled":
        return Status("disabled", "off", "no webhooks are taken and nothing is synced")
    if gateway == "reauth_required":
        return _RECONNECT
    sync = (state or {}).get("status")
    if sync == "reauth_required":
        return _RECONNECT
    refused = _refused(health)
    if refused and sync != "syncing":
        return Status("needs reconnect", "bad", f"{refused}: add the integration again with valid credentials")
    if sync == "syncing":
        return Status("syncing", "busy", "a sync is running")
    if sync == "error":
        failures = (state or {}).get("consecutive_failures") or 0
        return Status("failing", "bad", f"the last {failures} run(s) failed; it is retried with backoff")
    if sync == "success":
        return Status("healthy", "ok", "the last sync succeeded")
    return Status("not synced yet", "warn", "run Test sync (latest 5) to check it works")


def run_status(status: str) -> Status:
    return {
        "queued": Status("queued", "busy"),
        "running": Status("running", "busy"),
        "success": Status("finished", "ok"),
        "error": Status("failed", "bad"),
        "reauth_required": Status("needs reconnect", "bad"),
        "cancelled": Status("cancelled", "off"),
    }.get(status, Status(status, "off"))


# The sync buttons' request bodies (the scheduler's presets).
PRESETS: dict[str, dict[str, Any]] = {
    "test": {"mode": "latest", "limit": 5},
    "quick": {"days": 30},
    "backfill": {"mode": "backfill"},
}
