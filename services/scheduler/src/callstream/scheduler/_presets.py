"""Sync request presets, turned into the plain modes the policy plans: free of I/O.

What the body may say (``POST /v1/integrations/{id}/syncs``):

- ``{"mode": "latest", "limit": 5}``: the newest N calls (the "test with the latest 5");
- ``{"days": 30}`` (or ``{"mode": "range", "days": 30}``): the quick sync, ``[now - 30 d, now)``;
- ``{"mode": "range", "from": ..., "to": ...}``: a custom range (``to`` defaults to now);
- ``{"mode": "backfill"}``: all history (``to`` optional);
- ``{"mode": "incremental"}``: what the schedule would run now.

Anything else is a :class:`PlanError` (a 400 naming the combination).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from callstream.contracts import SyncMode

from ._policy import PlanError

MAX_DAYS = 3_650  # ten years: further back is a backfill


@dataclass(frozen=True, slots=True)
class Wanted:
    """A request reduced to a mode and its arguments (``manual_plan``'s)."""

    mode: SyncMode
    start: datetime | None
    end: datetime | None
    limit: int | None


def resolve(
    *,
    mode: SyncMode | None,
    days: int | None,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    now: datetime,
) -> Wanted:
    if days is None:
        if mode is None:
            raise PlanError("give a mode (incremental, backfill, range, latest) or days")
        return Wanted(mode, start, end, limit)
    if mode not in (None, "range"):
        raise PlanError(f"days is a range of the last N days; {mode} takes no days")
    if start is not None or end is not None:
        raise PlanError("days takes no from or to: give either days or a from/to range")
    if limit is not None:
        raise PlanError("days takes no limit")
    if not 1 <= days <= MAX_DAYS:
        raise PlanError(f"days must be between 1 and {MAX_DAYS} (further back: mode backfill)")
    return Wanted("range", now - timedelta(days=days), now, None)
