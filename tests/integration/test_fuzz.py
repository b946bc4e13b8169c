"""Schemathesis against the app's own OpenAPI document: no server errors, responses match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.conftest import _make_tenant

MAX_EXAMPLES = 15
# Server errors, and answers (status, content type, headers, body) that contradict the document.
# Positive-data acceptance is left out: the document cannot express every cross-field rule
# (start before end, a known IANA zone), so a schema-valid request may still rightly be a 400.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# The socket needs a WebSocket client (tests/e2e); logout would revoke the fuzzer's own token; a test
# delivery and a report run POST to whatever URL a generated webhook names, and tests reach only
# 127.0.0.1 (tests/integration/test_webhooks.py and test_reports.py call both).
SKIP = {
    "GET /api/v1/ws/analytics/{org_id}",
    "POST /api/v1/auth/logout",
    "POST /api/v1/webhooks/{webhook_id}/test",
    "POST /api/v1/report-schedules/{report_schedule_id}/run",
}


@pytest.mark.slow
def test_every_operation_survives_generated_requests(base_app):
    tenant = _make_tenant(base_app, "Fuzz", "Europe/Berlin")
    headers = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", base_app)
    failures: dict[str, str] = {}
    examples = 0
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIP:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal examples
            examples += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis reports its findings as an exception group
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    print(f"fuzzed {operations} operations with {examples} generated requests")
    assert operations >= 25
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
