"""A failed job's error names its code, as the contract's errors do; an aggregation over its limits
while it runs says so as the REST answer would (too_costly, with the estimate and the limit)."""

from __future__ import annotations

import os
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.conftest import process_env
from webapp.analytics.cost import TooCostly
from webapp.analytics.window import QueryError


@pytest.fixture
def worker_modules(monkeypatch: pytest.MonkeyPatch, services: Any) -> tuple[ModuleType, ModuleType]:
    # The workers package builds its app from the environment as it is imported: a worker's.
    monkeypatch.setattr(os, "environ", process_env(services))
    from workers import runner
    from workers.tasks import aggregation

    return runner, aggregation


def test_every_outcome_of_a_failed_job_has_a_code(worker_modules):
    runner, _ = worker_modules
    cases = {
        SoftTimeLimitExceeded(): "time_limit",
        runner.JobFailed("nope"): "job_failed",
        QueryError("bad range", "start"): "bad_request",
        TooCostly("too big", "group_by", {"estimate": 9, "limit": 1}): "too_costly",
        RuntimeError("boom"): "internal_error",
    }
    for exc, code in cases.items():
        state, outcome = runner._outcome(exc)
        assert state == "failed"
        assert outcome["error"]["code"] == code, exc
        assert outcome["error"]["message"]


def test_an_aggregation_too_costly_while_it_runs_is_not_wrapped(
    monkeypatch: pytest.MonkeyPatch, worker_modules
):
    runner, aggregation = worker_modules
    refused = TooCostly("the answer would hold 9 cells", "group_by", {"estimate": 9, "limit": 1})

    def run_aggregation(*_: Any, **__: Any) -> Any:
        raise refused

    monkeypatch.setattr(aggregation, "run_aggregation", run_aggregation)
    monkeypatch.setattr(aggregation.AggregationQuery, "from_params", staticmethod(lambda params: params))
    monkeypatch.setattr(aggregation, "current_app", SimpleNamespace(config={"ANALYTICS_MAX_CELLS": 1}))
    ctx = SimpleNamespace(
        params={}, job=SimpleNamespace(org_id=1), session=None, report=lambda _: None, log=lambda *_: None
    )
    with pytest.raises(TooCostly) as raised:
        aggregation._aggregate(ctx)  # type: ignore[arg-type]
    _, outcome = runner._outcome(raised.value)
    assert outcome["error"]["code"] == "too_costly"
    assert outcome["error"]["details"] == {"estimate": 9, "limit": 1}
