"""Schemathesis against the app's own OpenAPI document with every check it has: each operation with
generated valid and invalid requests, then sequences of operations (the stateful phase)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyFailure, FlakyStrategyDefinition
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful import run_state_machine_as_test

from tests.conftest import _make_tenant

# Per operation (about seventy): enough for each to meet valid and invalid bodies, queries and headers
# every run, within the suite's time (hypothesis draws other cases in the next run).
MAX_EXAMPLES = 14
STATEFUL_EXAMPLES = 24
# Every check schemathesis has: no server error; status codes, content types, headers and bodies as
# the document says; invalid data refused and valid data accepted; missing required headers refused;
# unsupported methods 405 with Allow; auth not ignored; a deleted object gone and a created one there.
checks.load_all_checks()
CHECKS = list(checks.CHECKS.get_all())
CONFIG = {
    # The token is the test's own (sent with every request), never a generated or mutated one: an
    # invalid case whose only fault was a missing token would be made valid by it.
    "generation": {"mode": "all", "with-security-parameters": False},
    "checks": {
        # A request valid by the document may still break a rule between its fields that a JSON
        # schema cannot say (start before end, a known IANA zone, a first response after creation):
        # 400 naming it, 409 for a state that cannot change, 410 for a link past its time, 422 for
        # a request too large to answer synchronously or a key used for another request.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "410", "422", "429"]
        },
        # Refusals of invalid data besides 400 and 422: too large (413; 414 for a query string the
        # server refuses before the application), the link gone (410).
        "negative_data_rejection": {
            "expected-statuses": [
                "400",
                "401",
                "403",
                "404",
                "405",
                "409",
                "410",
                "413",
                "414",
                "415",
                "422",
                "429",
            ]
        },
    },
}
# The socket needs a WebSocket client (tests/e2e); logout would revoke the fuzzer's own token, and so
# would deleting users (the fuzzer's admin can delete the others, never itself); a test delivery and a
# report run POST to whatever URL a generated webhook names, and tests reach only 127.0.0.1
# (tests/integration/test_webhooks.py and test_reports.py call both).
SKIP = {
    "GET /api/v1/ws/analytics/{org_id}",
    "POST /api/v1/auth/logout",
    "POST /api/v1/webhooks/{webhook_id}/test",
    "POST /api/v1/report-schedules/{report_schedule_id}/run",
}


def _schema(app: Any) -> Any:
    config = SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config).exclude(
        func=lambda ctx: ctx.operation.label in SKIP
    )


@pytest.mark.slow
def test_every_operation_survives_generated_requests(base_app):
    tenant = _make_tenant(base_app, "Fuzz", "Europe/Berlin")
    headers = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    schema = _schema(base_app)
    failures: dict[str, str] = {}
    examples = 0
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # Valid requests and invalid ones, drawn from both.
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
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
    assert operations >= 40
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


@contextlib.contextmanager
def _stopped_by_a_changed_database() -> Iterator[None]:
    """Let Hypothesis stop where the live database led a replay elsewhere (FlakyStrategyDefinition,
    raised alone or, when a replay met it, inside a FlakyFailure); anything else goes on up."""
    try:
        yield
    except FlakyStrategyDefinition:
        pass
    except FlakyFailure as exc:
        if not all(isinstance(inner, FlakyStrategyDefinition) for inner in exc.exceptions):
            raise


@pytest.mark.slow
def test_sequences_of_operations_survive(base_app):
    """The stateful phase: operations chained through the links schemathesis infers (an id a POST
    answers, used by the GET, PATCH and DELETE of that object), every check on every step."""
    tenant = _make_tenant(base_app, "Stateful", "Europe/Berlin")
    headers = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    machine = _schema(base_app).as_state_machine()
    # Failures are collected, not raised: Hypothesis would replay a failing sequence against a database
    # its first run changed, and report that replay instead of the failure.
    failures: dict[str, str] = {}
    steps = 0

    class Sequences(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            nonlocal steps
            steps += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (AssertionError, FailureGroup) as exc:
                failures.setdefault(case.operation.label, f"{type(exc).__name__}: {exc}"[:2000])

    # Which rules may run depends on what the live database answered before, so Hypothesis may find
    # the same choices leading elsewhere in a later sequence and stop there (FlakyStrategyDefinition):
    # every step run until then was checked, and counted below.
    with _stopped_by_a_changed_database():
        run_state_machine_as_test(
            Sequences,
            settings=settings(
                max_examples=STATEFUL_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                stateful_step_count=6,
                phases=[Phase.explicit, Phase.generate],
            ),
        )
    print(f"ran sequences of {steps} steps in all")
    assert steps >= 20
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
