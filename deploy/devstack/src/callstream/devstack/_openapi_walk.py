"""Walk every operation of a served OpenAPI document with schemathesis: no 5xx, and status codes,
content types and bodies as documented. (schemathesis' own pytest plugin does not run on pytest 9
yet, so the operations are walked with hypothesis directly.)"""

from __future__ import annotations

from typing import Any


def walk_openapi(
    base_url: str,
    token: str,
    *,
    examples_per_operation: int = 25,
    skip: frozenset[str] = frozenset(),
) -> tuple[set[str], int]:
    """Returns the labels of every documented operation and the number of requests made."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    calls = 0
    for operation in operations:
        if operation.label in skip:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples_per_operation,
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
                headers={"Authorization": f"Bearer {token}"},
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        conforms()
    return {op.label for op in operations}, calls
