"""The local dev stack: embedded PostgreSQL and NATS, ``./dev up``, and the pytest fixtures."""

from ._servers import EmbeddedPostgres, NatsServer, free_port, nats_server_binary, wait_port
from ._services import MIGRATION_ORDER, SERVICES, ServiceDef, by_name
from ._stack import Stack

__all__ = [
    "MIGRATION_ORDER",
    "SERVICES",
    "EmbeddedPostgres",
    "NatsServer",
    "ServiceDef",
    "Stack",
    "by_name",
    "free_port",
    "nats_server_binary",
    "wait_port",
]
