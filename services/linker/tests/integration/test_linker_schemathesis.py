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

from callstream.devstack import free_port, walk_openapi

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
    labels, calls = walk_openapi(linker_url, admin_token, examples_per_operation=EXAMPLES_PER_OPERATION)
    assert labels >= {"GET /v1/links", "POST /v1/links/resolve", "GET /v1/messages"}
    assert calls >= len(labels) * 5
