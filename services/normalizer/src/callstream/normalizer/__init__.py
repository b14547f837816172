"""callstream normalizer: raw calls to messages and customers, message events via an outbox."""

from ._app import build_app
from ._settings import Settings, load

__all__ = ["Settings", "build_app", "load"]
