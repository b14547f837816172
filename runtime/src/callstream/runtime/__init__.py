"""Runtime helpers every callstream service shares: settings, logging, HTTP conventions,
connections, migrations and the service command line. No business logic lives here."""

from ._broker import Broker
from ._http import ApiError, Check, api_error_answer, create_app, error_response
from ._logging import REDACTED, configure_logging, get_logger, redact_secrets
from ._metrics import RequestMetrics, request_id
from ._migrations import Migration, MigrationError, apply_migrations, discover, migrate
from ._postgres import check_postgres, create_pool, wait_for_postgres
from ._rsgi import AsgiOverRsgi, FirstAnswer
from ._service import Command, ServiceRuntime, serve_asgi, serve_http, service_main, setup_streams
from ._settings import HttpServer, ServiceSettings, load_settings
from ._streams import consumer_config, ensure_all, ensure_consumer, ensure_stream, stream_config

__all__ = [
    "REDACTED",
    "ApiError",
    "AsgiOverRsgi",
    "Broker",
    "Check",
    "Command",
    "FirstAnswer",
    "HttpServer",
    "Migration",
    "MigrationError",
    "RequestMetrics",
    "ServiceRuntime",
    "ServiceSettings",
    "api_error_answer",
    "apply_migrations",
    "check_postgres",
    "configure_logging",
    "consumer_config",
    "create_app",
    "create_pool",
    "discover",
    "ensure_all",
    "ensure_consumer",
    "ensure_stream",
    "error_response",
    "get_logger",
    "load_settings",
    "migrate",
    "redact_secrets",
    "request_id",
    "serve_asgi",
    "serve_http",
    "service_main",
    "setup_streams",
    "stream_config",
    "wait_for_postgres",
]
