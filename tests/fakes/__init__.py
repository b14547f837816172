"""Fake Fathom and Gong servers, faithful to shared/providers/*.md, for tests, benchmarks and the
dev stack. In a test: ``async with serve_in_process(create_app(state)) as base_url: ...``; as a
process: ``python -m tests.fakes.fathom --port P --seed S`` or ``python -m tests.fakes.gong ...``.
Each fake also answers ``POST /_fake/faults`` (5xx bursts, slow answers, limits on/off, expired
cursors) and ``GET /_fake/requests`` (what it served)."""

from ._controls import Faults, RequestLog, Served
from ._server import serve_in_process

__all__ = ["Faults", "RequestLog", "Served", "serve_in_process"]
