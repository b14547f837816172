"""callstream's console: server-rendered pages for operators over the four services' HTTP APIs
(it reads no table of theirs and holds no state but a signed session cookie)."""

from ._app import build_app
from ._settings import Settings, load

__all__ = ["Settings", "build_app", "load"]
