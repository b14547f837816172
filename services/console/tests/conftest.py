"""Fixtures of the console's tests (the helpers are in console_stack.py, importable by the tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from console_stack import ConsoleStack, _console_stack, _service_env

from callstream.devstack import ServiceProcess


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return _service_env(service_env)


@pytest.fixture
async def console_stack(
    service_env: dict[str, str], jetstream: object, start_service: Callable[..., ServiceProcess]
) -> AsyncIterator[ConsoleStack]:
    async for stack in _console_stack(service_env, jetstream, start_service):
        yield stack
