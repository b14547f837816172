"""callstream scheduler: when to pull, sync state and run history."""

from ._app import build_app, build_scheduler
from ._clock import Clock, SystemClock
from ._policy import Policy, RunPlan, advanced_watermark, next_on_grid
from ._scheduler import Scheduler, TickReport
from ._settings import Settings, load
from ._store import SyncStore

__all__ = [
    "Clock",
    "Policy",
    "RunPlan",
    "Scheduler",
    "Settings",
    "SyncStore",
    "SystemClock",
    "TickReport",
    "advanced_watermark",
    "build_app",
    "build_scheduler",
    "load",
    "next_on_grid",
]
