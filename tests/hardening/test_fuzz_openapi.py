"""A schema-driven fuzz run (schemathesis) over every operation of the OpenAPI document, bounded
in time: no 5xx, no status code the document does not declare, and every answer matches the
schema declared for it (response models and problem documents alike)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# A demo client holding each scope.
HOLDER = {
    "records:write": "district-sis",
    "submissions:read": "district-sis",
    "agreements:read": "district-data-manager",
    "agreements:write": "district-data-manager",
    "agreements:approve": "district-data-manager",
    "indicators:write": "backbone-manager",
    "indicators:read": "backbone-dashboard",
    "results:write": "backbone-manager",
    "audit:read": "county-auditor",
    "admin": "backbone-admin",
}
EXAMPLES = 10
BUDGET_SECONDS = 150


def _caller(operation: Any) -> str | None:
    security = operation.definition.raw.get("security")
    if not security:
        return None
    scopes = security[0]["oauth2"]
    return HOLDER[scopes[0]] if scopes else "district-sis"


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(headers={**headers, **(case.headers or {})})
        case.validate_response(
            response,
            checks=(not_a_server_error, status_code_conformance, response_schema_conformance),
        )

    run()


@pytest.mark.slow
def test_fuzz_every_operation_no_5xx_no_undeclared_status(app, api):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    started = time.monotonic()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        caller = _caller(operation)
        try:
            _fuzz(operation, api.headers(caller) if caller else {})
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:900])
        operations += 1
        if time.monotonic() - started > BUDGET_SECONDS:
            break
    assert not failures, "\n".join(failures[:20])
    assert operations >= 40
