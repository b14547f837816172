"""callstream ingest-gateway: Fathom webhooks, integrations and provider pulls."""

from ._app import build_app
from ._settings import Settings, load

__all__ = ["Settings", "build_app", "load"]
