"""callstream linker: resolved, safe links to the original of a call."""

from ._app import build_app
from ._settings import Settings, load

__all__ = ["Settings", "build_app", "load"]
