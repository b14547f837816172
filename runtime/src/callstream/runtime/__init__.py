"""Runtime helpers every callstream service shares: settings, logging, HTTP conventions,
connections, migrations and the service command line. No business logic lives here."""

from ._admin import ADMIN_TOKEN_MIN_LENGTH, AdminToken, AdminTokenSecret, bearer_token
from ._api_tokens import MANAGE_SCOPE, READ_SCOPE, ManageAccess, ManageGuard, manage_access, still_manages_sql
from ._backlog import backlog_worker
from ._broker import Broker, NatsAuth, connect_nats
from ._consume import (
    DEAD_LETTERED,
    HANDLED,
    RETRY,
    Outcome,
    Redelivery,
    Unprocessable,
    ack,
    bind,
    consume,
    dead_letter,
    give_up,
    nak,
    settle,
)
from ._http import ApiError, Check, api_error_answer, create_app, error_response
from ._keyset import BadCursor, KeysetCursor, decode_keyset_cursor, encode_keyset_cursor
from ._logging import REDACTED, configure_logging, get_logger, redact_secrets
from ._metrics import RequestMetrics, request_id
from ._migrations import Migration, MigrationError, apply_migrations, discover, migrate
from ._postgres import check_postgres, create_pool, wait_for_postgres
from ._ratelimit import ClientRateLimit
from ._rsgi import AsgiOverRsgi, FirstAnswer
from ._service import Command, ServiceRuntime, serve_asgi, serve_http, service_main, setup_streams
from ._settings import HttpServer, ServiceSettings, load_settings
from ._snapshot import SnapshotGauge
from ._streams import consumer_config, ensure_all, ensure_consumer, ensure_stream, stream_config
from ._supervisor import RestartPolicy, Supervisor, WorkerDown, backoff_delay, periodic, wait_or_stop
from ._tracing import SpanKind, Tracing, new_traceparent, tracing

__all__ = [
    "ADMIN_TOKEN_MIN_LENGTH",
    "DEAD_LETTERED",
    "HANDLED",
    "MANAGE_SCOPE",
    "READ_SCOPE",
    "REDACTED",
    "RETRY",
    "AdminToken",
    "AdminTokenSecret",
    "ApiError",
    "AsgiOverRsgi",
    "BadCursor",
    "Broker",
    "Check",
    "ClientRateLimit",
    "Command",
    "FirstAnswer",
    "HttpServer",
    "KeysetCursor",
    "ManageAccess",
    "ManageGuard",
    "Migration",
    "MigrationError",
    "NatsAuth",
    "Outcome",
    "Redelivery",
    "RequestMetrics",
    "RestartPolicy",
    "ServiceRuntime",
    "ServiceSettings",
    "SnapshotGauge",
    "SpanKind",
    "Supervisor",
    "Tracing",
    "Unprocessable",
    "WorkerDown",
    "ack",
    "api_error_answer",
    "apply_migrations",
    "backlog_worker",
    "backoff_delay",
    "bearer_token",
    "bind",
    "check_postgres",
    "configure_logging",
    "connect_nats",
    "consume",
    "consumer_config",
    "create_app",
    "create_pool",
    "dead_letter",
    "decode_keyset_cursor",
    "discover",
    "encode_keyset_cursor",
    "ensure_all",
    "ensure_consumer",
    "ensure_stream",
    "error_response",
    "get_logger",
    "give_up",
    "load_settings",
    "manage_access",
    "migrate",
    "nak",
    "new_traceparent",
    "periodic",
    "redact_secrets",
    "request_id",
    "serve_asgi",
    "serve_http",
    "service_main",
    "settle",
    "setup_streams",
    "still_manages_sql",
    "stream_config",
    "tracing",
    "wait_for_postgres",
    "wait_or_stop",
]
