"""callstream scheduler: when to pull, sync state and run history."""

from ._app import build_app
from ._settings import Settings, load

__all__ = ["Settings", "build_app", "load"]
