"""Numbers an outside audit found wrong: cached answers that filter on current values after those
values change, durations of offset-less times across a clock change, the dashboard's previous period
written two ways, a re-resolution before its reopen. Expected values are worked out by hand below."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.conftest import wait_for_job

RANGE = "start=2026-10-01&end=2026-12-01"


def _ticket(api, **fields) -> dict:
    created = api.post("/api/v1/tickets", json={"subject": "audit", **fields})
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def _patch(api, ticket: dict, expect: int = 200, **fields) -> dict:
    answer = api.patch(f"/api/v1/tickets/{ticket['id']}", json=fields)
    assert answer.status_code == expect, answer.get_json()
    return answer.get_json()


def _get(api, path: str) -> dict:
    answer = api.get(path)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _cached(api, path: str) -> dict:
    """The answer, asked twice so that the second comes from the cache."""
    _get(api, path)
    body = _get(api, path)
    assert body["meta"]["cache"] == "hit"
    return body


@pytest.mark.parametrize(
    ("field", "before", "after", "read"),
    [
        ("assigned_to", "alice", "bob", "distribution/status"),
        ("channel", "email", "chat", "distribution/priority"),
        ("category", "billing", "refunds", "distribution/status"),
        ("priority", "high", "low", "distribution/channel"),
        ("status", "open", "pending", "distribution/priority"),
    ],
)
def test_a_distribution_filtered_on_a_field_follows_changes_of_that_field(tenant, field, before, after, read):
    ticket = _ticket(tenant.agent, created_at="2026-11-10T12:00:00Z", **{field: before})
    path = f"/api/v1/analytics/{read}?{RANGE}&{field}={before}"
    assert _cached(tenant.viewer, path)["total"] == 1
    _patch(tenant.agent, ticket, **{field: after})
    assert _get(tenant.viewer, path)["total"] == 0
    assert _get(tenant.viewer, f"/api/v1/analytics/{read}?{RANGE}&{field}={after}")["total"] == 1


def test_performance_and_dashboard_filtered_on_assignee_follow_a_reassignment(tenant):
    # Created five days ago, never answered: breached (urgent: 1 h) and in the backlog.
    created = datetime(2026, 11, 10, 12, tzinfo=UTC).isoformat()
    ticket = _ticket(tenant.agent, created_at=created, priority="urgent", assigned_to="alice")
    performance = f"/api/v1/analytics/performance?{RANGE}&assigned_to=bob"
    dashboard = f"/api/v1/analytics/dashboard?{RANGE}&assigned_to=alice"
    assert _cached(tenant.viewer, performance)["sla"]["overall"]["first_response"]["breached"] == 0
    assert _cached(tenant.viewer, dashboard)["backlog"]["count"] == 1
    assert (
        tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"assigned_to": "bob"}).status_code == 200
    )
    assert _get(tenant.viewer, performance)["sla"]["overall"]["first_response"]["breached"] == 1
    assert _get(tenant.viewer, dashboard)["backlog"]["count"] == 0


# Offset-less times are New York wall-clock times. 2026-10-31 23:00 EDT is 03:00Z on Nov 1; clocks
# fall back at 02:00 EDT, so 2026-11-01 03:00 EST is 08:00Z (5 h later) and 23:00 EST is 04:00Z on
# Nov 2 (25 h later). In Berlin, 2026-03-28 23:00 CET is 22:00Z; clocks spring forward at 02:00 on the
# 29th, so 04:00 CEST is 02:00Z (4 h later) and 23:00 CEST is 21:00Z (23 h later).
NAIVE_FIELDS = ("timezone", "created", "answered", "resolved", "response", "resolution")
NAIVE_CASES = [
    ("America/New_York", "2026-10-31T23:00:00", "2026-11-01T03:00:00", "2026-11-01T23:00:00", 5.0, 25.0),
    ("Europe/Berlin", "2026-03-28T23:00:00", "2026-03-29T04:00:00", "2026-03-29T23:00:00", 4.0, 23.0),
]


def _durations(api, category: str) -> tuple[float, float]:
    body = {"metrics": ["response_time", "resolution_time"], "filters": {"category": [category]}}
    body |= {"start": "2026-01-01", "end": "2026-12-31"}
    answer = api.post("/api/v1/analytics/aggregations", json=body)
    assert answer.status_code == 200, answer.get_json()
    row = answer.get_json()["rows"][0]
    return row["response_time"]["avg"], row["resolution_time"]["avg"]


@pytest.mark.parametrize(
    ("timezone", "created", "answered", "resolved", "response", "resolution"), NAIVE_CASES
)
def test_offset_less_times_across_a_clock_change_measure_real_hours(
    make_tenant, timezone, created, answered, resolved, response, resolution
):
    tenant = make_tenant("Naive", timezone)
    fields = {"created_at": created, "first_response_at": answered, "resolved_at": resolved}
    _ticket(tenant.agent, status="resolved", category="naive", **fields)
    assert _durations(tenant.viewer, "naive") == (response, resolution)


@pytest.mark.worker
@pytest.mark.parametrize(
    ("timezone", "created", "answered", "resolved", "response", "resolution"), NAIVE_CASES
)
def test_imported_offset_less_times_measure_real_hours(
    celery_worker, make_live_tenant, timezone, created, answered, resolved, response, resolution
):
    tenant = make_live_tenant("NaiveImport", timezone)
    row = {"subject": "x", "status": "resolved", "category": "naive"}
    row |= {"created_at": created, "first_response_at": answered, "resolved_at": resolved}
    submitted = tenant.agent.post(
        "/api/v1/tickets/import", data=json.dumps([row]), headers={"Content-Type": "application/json"}
    )
    assert submitted.status_code == 202, submitted.get_json()
    assert wait_for_job(tenant.viewer, submitted.get_json()["job_id"])["state"] == "succeeded"
    assert _durations(tenant.viewer, "naive") == (response, resolution)


def test_the_previous_period_of_whole_local_days_is_as_many_days_however_written(make_tenant):
    tenant = make_tenant("Previous", "America/New_York")
    # The week of 2026-11-01 holds the fall-back (7 days, 169 hours); the week before it is 7 days too.
    forms = [
        "start=2026-11-01&end=2026-11-08",
        "start=2026-11-01T00:00:00-04:00&end=2026-11-08T00:00:00-05:00",
        "start=2026-11-01T04:00:00Z&end=2026-11-08T05:00:00Z",
    ]
    for form in forms:
        body = _get(tenant.viewer, f"/api/v1/analytics/dashboard?{form}")
        assert (body["previous_start"], body["previous_end"]) == (
            "2026-10-25T00:00:00-04:00",
            "2026-11-01T00:00:00-04:00",
        ), form
    # A range that is not whole days, however written: the same length of real time before it. The
    # week to 2026-11-02 14:30 EST began 2026-10-26 14:30 EDT, 169 hours earlier; 169 more hours back
    # is 2026-10-19 13:30 EDT.
    for form in (
        "period=7d&end=2026-11-02T14:30:00-05:00",
        "start=2026-10-26T14:30:00-04:00&end=2026-11-02T14:30:00-05:00",
    ):
        body = _get(tenant.viewer, f"/api/v1/analytics/dashboard?{form}")
        assert body["previous_start"] == "2026-10-19T13:30:00-04:00", form
    body = _get(
        tenant.viewer, "/api/v1/analytics/dashboard?start=2026-11-01T06:00:00Z&end=2026-11-02T06:00:00Z"
    )
    assert body["previous_start"] == "2026-10-31T02:00:00-04:00"


def test_a_resolution_before_the_last_reopen_is_refused(tenant):
    ticket = _ticket(
        tenant.agent, created_at="2026-11-01T10:00:00Z", status="resolved", resolved_at="2026-11-01T12:00:00Z"
    )
    assert tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "open"}).status_code == 200
    early = tenant.agent.patch(
        f"/api/v1/tickets/{ticket['id']}", json={"status": "resolved", "resolved_at": "2026-11-01T13:00:00Z"}
    )
    assert early.status_code == 400
    assert early.get_json()["error"]["details"]["field"] == "resolved_at"
    assert (
        tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "resolved"}).status_code == 200
    )


@pytest.mark.parametrize(("given", "canonical"), [("utc", "UTC"), ("europe/berlin", "Europe/Berlin")])
def test_time_zone_names_are_matched_whatever_their_case(tenant, given, canonical):
    body = _get(tenant.viewer, f"/api/v1/analytics/time-series/ticket_count?{RANGE}&tz={given}")
    assert body["timezone"] == canonical
