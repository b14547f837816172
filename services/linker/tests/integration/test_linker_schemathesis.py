"""schemathesis against /schema of a real linker process: no 5xx, and every response matches the
schema (status codes, content types, bodies), for a bounded number of generated requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callstream.devstack import free_port

EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def linker_url(linker_env: None, jetstream: Any, seed: Any) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CALLSTREAM_LINKER_PORT": str(port), "CALLSTREAM_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "callstream.linker", "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the linker exited"
            assert time.monotonic() < deadline, "the linker did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_api_matches_its_schema(linker_url: str, admin_token: str) -> None:
    # One test that walks every operation (schemathesis' own pytest plugin does not run on
    # pytest 9 yet): hypothesis draws requests from each operation's schema.
    schema = schemathesis.openapi.from_url(f"{linker_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /v1/links", "POST /v1/links/resolve", "GET /v1/messages"}
    calls = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=linker_url,
                headers={"Authorization": f"Bearer {admin_token}"},
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        conforms()
    assert calls >= len(operations) * 5
