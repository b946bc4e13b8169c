"""Every way an analytics request can be wrong is a 400 naming what is allowed; values never become SQL."""

from __future__ import annotations

from typing import Any

import pytest

TS = "/api/v1/analytics/time-series/ticket_count"


@pytest.fixture
def ny(make_tenant: Any) -> Any:
    return make_tenant(name="Validation", timezone="America/New_York")


def assert_400(response: Any, *fragments: str) -> dict[str, Any]:
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    # A cost limit (too many buckets) is too_costly; every other refusal here a plain bad request.
    assert error["code"] == ("too_costly" if "estimate" in error["details"] else "bad_request"), error
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


@pytest.mark.parametrize(
    ("path", "query", "fragments"),
    [
        (
            "/api/v1/analytics/time-series/tickets",
            {},
            ("unknown metric 'tickets'", "ticket_count, response_time"),
        ),
        (TS, {"granularity": "minutely"}, ("granularity", "'hourly'", "'yearly'")),
        (TS, {"tz": "Mars/Olympus_Mons"}, ("unknown time zone", "IANA")),
        (TS, {"tz": "../etc/passwd"}, ("unknown time zone",)),
        (TS, {"start": "2026-03-02", "end": "2026-03-01"}, ("must be before end",)),
        (TS, {"start": "2026-03-01", "end": "2026-03-01"}, ("must be before end",)),
        (
            TS,
            {"granularity": "hourly", "start": "2020-01-01", "end": "2026-01-01"},
            ("about 52,608 hourly buckets", "limit of 10,000"),
        ),
        (TS, {"start": "2026-13-01"}, ("start", "ISO 8601")),
        (TS, {"end": "yesterday"}, ("end", "ISO 8601")),
        (TS, {"start": "2026-03-08T02:30:00"}, ("does not exist",)),
        (TS, {"start": "2026-11-01T01:30:00"}, ("ambiguous",)),
        (TS, {"priority": "critical"}, ("unknown priority 'critical'", "low, normal, high, urgent")),
        (TS, {"status": "null"}, ("unknown status 'null'",)),
        (TS, {"channel": "email,,chat"}, ("empty value",)),
        (TS, {"colour": "red"}, ("unknown query parameter 'colour'", "allowed:", "granularity")),
        ("/api/v1/analytics/distribution/subject", {}, ("unknown field 'subject'", "status, priority")),
        ("/api/v1/analytics/distribution/status", {"granularity": "daily"}, ("unknown query parameter",)),
        ("/api/v1/analytics/dashboard", {"period": "14d"}, ("period", "'7d'")),
        ("/api/v1/analytics/dashboard", {"period": "7d", "start": "2026-01-01"}, ("period or start",)),
        ("/api/v1/analytics/performance", {"tz": "Nowhere"}, ("unknown time zone",)),
        ("/api/v1/analytics/performance", {"assigned_to": "x" * 201}, ("longer than 200",)),
        ("/api/v1/analytics/snapshots", {"type": "yearly"}, ("type", "'daily'")),
        ("/api/v1/analytics/snapshots", {"start": "2026-02-01", "end": "2026-01-01"}, ("before end",)),
    ],
)
def test_bad_queries_are_400_naming_what_is_allowed(ny: Any, path: str, query: dict[str, str], fragments):
    assert_400(ny.viewer.get(path, query_string=query), *fragments)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"tz": "Mars/X"}, "tz"),
        ({"start": "2026-13-01"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2026-03-08T02:30:00"}, "start"),
        ({"end": "2026-11-01T01:30:00"}, "end"),
        ({"start": "1899-12-31"}, "start"),
    ],
)
def test_a_bad_time_or_zone_names_its_parameter(ny: Any, query: dict[str, str], field: str):
    assert assert_400(ny.viewer.get(TS, query_string=query))["details"] == {"field": field}


def test_too_many_buckets_is_a_cost_refusal_naming_the_estimate_and_the_limit(ny: Any):
    query = {"granularity": "hourly", "start": "2020-01-01", "end": "2026-01-01"}
    error = ny.viewer.get(TS, query_string=query).get_json()["error"]
    assert error["code"] == "too_costly"
    assert (error["details"]["estimate"], error["details"]["limit"]) == (52_608, 10_000)
    # A granularity it does not know is a plain bad request.
    assert (
        ny.viewer.get(TS, query_string={"granularity": "minutely"}).get_json()["error"]["code"]
        == "bad_request"
    )


@pytest.mark.parametrize(
    "path",
    [
        TS,
        "/api/v1/analytics/agents",
        "/api/v1/analytics/time-in-status",
        "/api/v1/analytics/distribution/channel",
        "/api/v1/analytics/performance",
        "/api/v1/analytics/dashboard",
    ],
)
@pytest.mark.parametrize("name", ["start", "end", "tz"])
def test_an_empty_bound_or_zone_is_refused_not_taken_as_left_out(ny: Any, path: str, name: str):
    response = ny.viewer.get(path, query_string={name: ""})
    assert response.status_code == 400, (path, name, response.get_json())


def test_a_repeated_query_parameter_is_refused(ny: Any):
    assert_400(ny.viewer.get(f"{TS}?priority=low&priority=high"), "more than once")


AGG = "/api/v1/analytics/aggregations"
BASE = {"metrics": ["response_time"], "start": "2026-01-01", "end": "2026-02-01"}


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({**BASE, "metrics": ["revenue"]}, ("metrics", "'ticket_count'")),
        ({**BASE, "metrics": []}, ("metrics",)),
        ({**BASE, "group_by": ["subject"]}, ("group_by", "'status'")),
        ({**BASE, "filters": {"subject": "x"}}, ("unknown filter 'subject'", "allowed: status")),
        ({**BASE, "filters": {"channel": ["fax"]}}, ("unknown channel 'fax'", "email")),
        ({**BASE, "filters": {"priority": 3}}, ("filters",)),
        ({**BASE, "percentiles": [0]}, ("percentiles", "1 to 99")),
        ({**BASE, "percentiles": [100]}, ("1 to 99",)),
        ({**BASE, "percentiles": [50.5]}, ("percentiles",)),
        ({**BASE, "granularity": "fortnightly"}, ("granularity", "'daily'")),
        (
            {**BASE, "granularity": "hourly", "start": "2020-01-01", "end": "2026-01-01"},
            ("about 52,608 hourly buckets", "limit of 10,000"),
        ),
        ({**BASE, "start": "2026-02-01"}, ("before end",)),
        ({**BASE, "start": "01/02/2026"}, ("ISO 8601",)),
        ({**BASE, "tz": "Europe/Atlantis"}, ("unknown time zone",)),
        ({**BASE, "order_by": "count"}, ("order_by",)),
        ({**BASE, "filters": {"status": None}}, ("filters.status", "not null")),
        ({**BASE, "filters": {"assigned_to": None}}, ("filters.assigned_to", "not null")),
    ],
)
def test_bad_aggregation_bodies_are_400(ny: Any, body: dict[str, Any], fragments):
    assert_400(ny.viewer.post(AGG, json=body), *fragments)


def test_aggregation_needs_a_json_object(ny: Any):
    assert ny.viewer.post(
        AGG, data="metrics=ticket_count", headers={"Content-Type": "text/plain"}
    ).status_code in (
        400,
        415,
    )
    assert_400(ny.viewer.post(AGG, json=["ticket_count"]), "object")


def test_values_are_bound_never_sql(ny: Any):
    hostile = "x') OR 1=1 --"
    body = ny.viewer.get(
        "/api/v1/analytics/distribution/category", query_string={"category": hostile}
    ).get_json()
    assert body["total"] == 0
    assert body["values"] == [{"value": hostile, "count": 0, "share": None}]
    response = ny.viewer.post(AGG, json={**BASE, "filters": {"assigned_to": [hostile, None]}})
    assert response.status_code == 200
    assert response.get_json()["rows"][0]["response_time"]["count"] == 0


def test_analytics_needs_a_token_and_snapshots_need_an_agent(ny: Any, client: Any):
    assert client.get(TS).status_code == 401
    assert (
        ny.viewer.post(
            "/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-01-01"}
        ).status_code
        == 403
    )
    assert_400(
        ny.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-1-1"}), "ISO 8601"
    )


def test_an_empty_organization_answers_zeros_and_nulls(ny: Any):
    body = ny.viewer.get(TS, query_string={"start": "2026-03-07", "end": "2026-03-10"}).get_json()
    assert [(p["bucket"], p["value"]) for p in body["points"]] == [
        ("2026-03-07T00:00:00-05:00", 0),
        ("2026-03-08T00:00:00-05:00", 0),
        ("2026-03-09T00:00:00-04:00", 0),
    ]
    dashboard = ny.viewer.get("/api/v1/analytics/dashboard", query_string={"period": "7d"}).get_json()
    assert dashboard["kpis"]["ticket_count"] == {"value": 0, "previous": 0, "change_pct": None}
    assert dashboard["period"] == "7d"
    # With no period and no range, the default period is named, not null.
    assert ny.viewer.get("/api/v1/analytics/dashboard").get_json()["period"] == "30d"
    assert dashboard["sla"]["overall"]["first_response"]["compliance"] is None
    performance = ny.viewer.get("/api/v1/analytics/performance").get_json()
    assert performance["response_time"] == {
        "count": 0,
        "avg": None,
        "min": None,
        "max": None,
        "p50": None,
        "p95": None,
        "p99": None,
    }


def test_a_ticket_change_invalidates_the_cached_answer(ny: Any):
    query = {"start": "2026-03-01", "end": "2026-03-02"}
    first = ny.viewer.get(TS, query_string=query).get_json()
    assert ny.viewer.get(TS, query_string=query).get_json()["meta"]["cache"] == "hit"
    created = ny.agent.post("/api/v1/tickets", json={"created_at": "2026-03-01T10:00:00"})
    assert created.status_code == 201
    after = ny.viewer.get(TS, query_string=query).get_json()
    assert after["meta"]["cache"] == "miss"
    assert after["summary"]["total_count"] == first["summary"]["total_count"] + 1


def test_a_daily_snapshot_listing_defaults_to_the_last_30_days_as_every_analytics_route(ny: Any):
    series = ny.viewer.get(TS).get_json()
    listing = ny.viewer.get("/api/v1/analytics/snapshots", query_string={"type": "daily"}).get_json()
    assert listing["start"] == series["start"][:10]
    assert listing["end"] == series["end"][:10]
