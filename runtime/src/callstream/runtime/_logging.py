"""structlog for every service: JSON when not on a terminal, key=value on one, secrets redacted.

Redaction is by key, so a secret passed as ``token=...`` or inside a nested dict never reaches the
output; transcripts and bodies are dropped the same way.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ._tracing import current_ids, tracing

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|authorization|api_?key|access_key|credential|cookie|signature|"
    r"transcript|content|body|payload|dsn|database_url)",
    re.IGNORECASE,
)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event.keys()):
        if key != "event":
            event[key] = _redact_value(key, event[key])
    return event


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``trace_id`` and ``span_id`` of the span the line is logged in, when one is recording: a log
    line leads to its trace and back. With tracing off, one attribute test."""
    if tracing.on:
        ids = current_ids()
        if ids is not None:
            event.setdefault("trace_id", ids[0])
            event.setdefault("span_id", ids[1])
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, so a logger cached early keeps
    working when stderr is replaced (test capture, a daemonised process)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(service: str, level: str = "info", fmt: str = "auto") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], drop_missing=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the standard library; route them through the same output at WARNING.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"{service} %(name)s %(levelname)s %(message)s"
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
