"""schemathesis against the OpenAPI of the gateway and the scheduler, served by real processes: no
5xx, and every response matches the schema. (The linker's own suite walks its schema the same way.)

Two gateway operations are left out on purpose: creating and disabling an integration make the
gateway call the integration's ``base_url`` (webhook registration, pulls), and generated URLs must
never send traffic off this machine."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Stack

EXAMPLES_PER_OPERATION = 25
NEVER_GENERATED = {"POST /v1/integrations", "DELETE /v1/integrations/{integration_id}"}


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("gateway", {"POST /v1/webhooks/fathom/{integration_id}", "POST /v1/tokens", "GET /v1/integrations"}),
        ("scheduler", {"POST /v1/integrations/{integration_id}/syncs", "GET /v1/sync-state"}),
    ],
)
def test_api_matches_its_schema(stack: Stack, service: str, expected: set[str]) -> None:
    base_url = stack.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert expected <= labels, labels
    calls = 0
    walked = [op for op in operations if op.label not in NEVER_GENERATED]
    for operation in walked:

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
                base_url=base_url,
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        conforms()
    assert calls >= len(walked) * 5
