"""Derived events (solves, one-touch, backlog steps, the agents report's solves) carry the priority and
assignee the ticket had at their instant, as its own events do: a change today does not move a 2017
solve to another group, and a backlog span is stepped out of the old group and into the new one at
the change. Expected values are worked out by hand from the writes below."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from webapp.core.timeutil import utcnow


def _ticket(api: Any, **fields: Any) -> int:
    response = api.post("/api/v1/tickets", json={"category": "dims", **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _patch(api: Any, ticket_id: int, **fields: Any) -> None:
    response = api.patch(f"/api/v1/tickets/{ticket_id}", json=fields)
    assert response.status_code == 200, response.get_json()


def _groups(api: Any, group: str, start: str, end: str, metrics: list[str]) -> dict[Any, dict[str, Any]]:
    body = {
        "metrics": metrics,
        "group_by": [group],
        "start": start,
        "end": end,
        "filters": {"category": ["dims"]},
    }
    answer = api.post("/api/v1/analytics/aggregations", json={**body, "tz": "UTC"})
    assert answer.status_code == 200, answer.get_json()
    return {row["group"][group]: row for row in answer.get_json()["rows"]}


def _count(rows: dict[Any, dict[str, Any]], group: Any, metric: str) -> int:
    return rows[group][metric]["count"] if group in rows else 0


def test_a_solve_keeps_the_priority_and_assignee_it_had(tenant):
    solved = _ticket(
        tenant.agent,
        priority="low",
        assigned_to="ana",
        status="resolved",
        created_at="2017-06-01T12:00:00Z",
        resolved_at="2017-06-03T12:00:00Z",
    )
    _patch(tenant.agent, solved, priority="urgent")
    _patch(tenant.agent, solved, assigned_to="bob")
    metrics = ["ticket_count", "resolution_time", "solved", "one_touch"]
    by_priority = _groups(tenant.viewer, "priority", "2017-06-01", "2017-06-05", metrics)
    for metric in metrics:
        assert (_count(by_priority, "low", metric), _count(by_priority, "urgent", metric)) == (1, 0), metric
    by_agent = _groups(
        tenant.viewer, "assigned_to", "2017-06-01", "2017-06-05", ["solved", "resolution_time"]
    )
    assert _count(by_agent, "ana", "solved") == _count(by_agent, "ana", "resolution_time") == 1
    assert _count(by_agent, "bob", "solved") == 0


def test_a_backlog_span_moves_group_at_the_change(tenant):
    waiting = _ticket(tenant.agent, priority="normal", created_at="2017-07-01T12:00:00Z")
    _patch(tenant.agent, waiting, priority="high")  # now: open since 2017, high from today
    # Back then it was a normal ticket in the backlog; today it is a high one, and only that.
    then = _groups(tenant.viewer, "priority", "2017-07-01", "2017-07-05", ["backlog"])
    assert (then["normal"]["backlog"]["count"], _count(then, "high", "backlog")) == (1, 0)
    tomorrow = (utcnow() + timedelta(days=1)).date()
    today = _groups(
        tenant.viewer,
        "priority",
        (tomorrow - timedelta(days=3)).isoformat(),
        tomorrow.isoformat(),
        ["backlog"],
    )
    assert (today["high"]["backlog"]["count"], _count(today, "normal", "backlog")) == (1, 0)
    # Over the days between, the normal group held it until the change and the high group after:
    # never both, never neither.
    series = {}
    for priority in ("normal", "high"):
        answer = tenant.viewer.get(
            "/api/v1/analytics/time-series/backlog",
            query_string={
                "granularity": "daily",
                "start": (tomorrow - timedelta(days=3)).isoformat(),
                "end": tomorrow.isoformat(),
                "tz": "UTC",
                "category": "dims",
                "priority": priority,
            },
        )
        assert answer.status_code == 200, answer.get_json()
        series[priority] = [p["value"] or 0 for p in answer.get_json()["points"]]
    assert [n + h for n, h in zip(series["normal"], series["high"], strict=True)] == [1, 1, 1]
    assert series["high"][-1] == 1
    assert series["normal"][0] == 1


def test_the_agents_report_credits_each_solve_to_whoever_had_the_ticket(tenant):
    ticket = _ticket(
        tenant.agent,
        assigned_to="ana",
        status="resolved",
        created_at="2017-08-01T12:00:00Z",
        resolved_at="2017-08-02T12:00:00Z",
    )
    _patch(tenant.agent, ticket, status="open")  # reopened now
    _patch(tenant.agent, ticket, assigned_to="bob")
    _patch(tenant.agent, ticket, status="resolved")

    def solved(start: date, end: date) -> dict[str, int]:
        answer = tenant.viewer.get(
            "/api/v1/analytics/agents",
            query_string={"start": start.isoformat(), "end": end.isoformat(), "min_tickets": 1, "tz": "UTC"},
        )
        assert answer.status_code == 200, answer.get_json()
        return {row["agent"]: row["solved"] for row in answer.get_json()["agents"]}

    assert solved(date(2017, 8, 1), date(2017, 8, 5)) == {"ana": 1}
    today = datetime.now(UTC).date()
    assert solved(today - timedelta(days=1), today + timedelta(days=1)) == {"bob": 1}


def test_a_back_filled_time_written_with_a_new_priority_keeps_the_old_one_at_its_instant(tenant):
    """One PATCH that sets a priority and back-fills a first response or a resolution: the back-filled
    events are the ticket's as it was then (low), the change itself is today's."""
    answered = _ticket(tenant.agent, priority="low", created_at="2017-06-01T12:00:00Z")
    _patch(tenant.agent, answered, status="pending")  # now
    _patch(tenant.agent, answered, priority="urgent", first_response_at="2017-06-02T12:00:00Z")
    solved = _ticket(tenant.agent, priority="low", created_at="2017-06-01T12:00:00Z")
    _patch(tenant.agent, solved, priority="urgent", status="resolved", resolved_at="2017-06-03T12:00:00Z")

    window = ("priority", "2017-06-01", "2017-06-10")
    rows = _groups(tenant.viewer, *window, ["ticket_count", "response_time", "resolution_time", "solved"])
    more = _groups(tenant.viewer, *window, ["backlog"])
    assert set(rows) == set(more) == {"low"}, (rows, more)
    low = {**rows["low"], **more["low"]}
    assert (low["ticket_count"]["count"], low["response_time"]["count"]) == (2, 1)
    assert (low["resolution_time"]["count"], low["solved"]["count"]) == (1, 1)
    # At the range's end (2017-06-10) the answered ticket is still in the backlog, as a low one.
    assert low["backlog"]["count"] == 1
