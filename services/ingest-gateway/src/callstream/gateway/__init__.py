"""callstream ingest-gateway: Fathom webhooks, integrations and provider pulls."""

from ._app import build_app
from ._integrations import IntegrationAccess, IntegrationStore, ReauthRequired, RefreshFailed, UnknownIntegration
from ._settings import Settings, load

__all__ = [
    "IntegrationAccess",
    "IntegrationStore",
    "ReauthRequired",
    "RefreshFailed",
    "Settings",
    "UnknownIntegration",
    "build_app",
    "load",
]
