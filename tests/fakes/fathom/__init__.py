"""A fake Fathom External API for tests, benchmarks and the dev stack (see ``_app``)."""

from __future__ import annotations

from litestar import Litestar

from ._app import FathomApp
from ._data import build_meeting
from ._state import Delivery, FathomConfig, FathomState


def create_app(state: FathomState) -> Litestar:
    return FathomApp(state).build()


__all__ = ["Delivery", "FathomConfig", "FathomState", "build_meeting", "create_app"]
