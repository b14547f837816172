"""The local dev stack: embedded PostgreSQL and NATS, ``./dev up``, and the pytest fixtures."""

from ._openapi_walk import walk_openapi
from ._process import ServiceProcess, base_service_env, setup_services
from ._servers import EmbeddedPostgres, NatsServer, free_port, nats_server_binary, pg_dump, wait_port
from ._services import (
    ADMIN_TOKEN_ENVS,
    CONSOLE,
    CONSOLE_ADMIN_TOKEN_ENV,
    MIGRATION_ORDER,
    SERVICES,
    ServiceDef,
    admin_headers,
    by_name,
    console_env,
    migrate_all,
    own_env,
)
from ._stack import Stack

__all__ = [
    "ADMIN_TOKEN_ENVS",
    "CONSOLE",
    "CONSOLE_ADMIN_TOKEN_ENV",
    "MIGRATION_ORDER",
    "SERVICES",
    "EmbeddedPostgres",
    "NatsServer",
    "ServiceDef",
    "ServiceProcess",
    "Stack",
    "admin_headers",
    "base_service_env",
    "by_name",
    "console_env",
    "free_port",
    "migrate_all",
    "nats_server_binary",
    "own_env",
    "pg_dump",
    "setup_services",
    "wait_port",
    "walk_openapi",
]
