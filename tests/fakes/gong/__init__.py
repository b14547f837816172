"""A fake Gong API v2 for tests, benchmarks and the dev stack (see ``_app``)."""

from __future__ import annotations

from litestar import Litestar

from ._app import NO_CALLS, GongApp
from ._data import Selector, build_call, build_transcript
from ._state import GongConfig, GongState


def create_app(state: GongState) -> Litestar:
    return GongApp(state).build()


__all__ = ["NO_CALLS", "GongConfig", "GongState", "Selector", "build_call", "build_transcript", "create_app"]
