"""Which slice of provider time a run covers, by mode. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from callstream.contracts import SyncRequested

# ``latest`` on Gong walks back in bands until it has enough calls (Gong has no "newest first").
LATEST_BANDS = (timedelta(days=1), timedelta(days=7), timedelta(days=30), timedelta(days=365), timedelta(days=3650))


def run_window(request: SyncRequested, now: datetime) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` of the run. The end defaults to the moment the run first started (kept in
    the checkpoint, so a resumed run covers the same window); ``latest`` has no window."""
    if request.mode == "latest":
        return None, None
    end = request.window.end or now
    if request.mode == "backfill":
        return None, end
    return request.window.start, end


def latest_bands(now: datetime, oldest: datetime) -> list[tuple[datetime, datetime]]:
    """Disjoint windows going back from ``now``: ``[now-1d, now)``, ``[now-7d, now-1d)``, ..."""
    bands, end = [], now
    for reach in LATEST_BANDS:
        start = max(now - reach, oldest)
        if start < end:
            bands.append((start, end))
            end = start
    if oldest < end:
        bands.append((oldest, end))
    return bands
