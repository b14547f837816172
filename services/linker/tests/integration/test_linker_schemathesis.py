"""schemathesis against /schema of a real linker process: no 5xx, and every response matches the
schema (status codes, content types, bodies), for a bounded number of generated requests."""

from __future__ import annotations

from callstream.devstack import walk_openapi

EXAMPLES_PER_OPERATION = 30


def test_api_matches_its_schema(linker_url: str, admin_token: str) -> None:
    labels, calls = walk_openapi(linker_url, admin_token, examples_per_operation=EXAMPLES_PER_OPERATION)
    assert labels >= {"GET /v1/links", "POST /v1/links/resolve", "GET /v1/messages"}
    assert calls >= len(labels) * 5
