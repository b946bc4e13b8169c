"""Composite answers: the dashboard and the performance report, each built from queries and sla."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from webapp.analytics import current, queries, side_by_side, sla_compliance
from webapp.analytics.buckets import Buckets
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.side_by_side import Read
from webapp.analytics.window import Window
from webapp.clocks.policy import policy_for
from webapp.core.filters import Filters
from webapp.core.vocabulary import PRIORITIES

PERFORMANCE_PERCENTILES = (50, 95, 99)
# KPI name -> (metric, statistic).
KPIS = {
    "ticket_count": ("ticket_count", "count"),
    "avg_response_time": ("response_time", "avg"),
    "avg_resolution_time": ("resolution_time", "avg"),
    "avg_sentiment_score": ("sentiment_score", "avg"),
    "solved": ("solved", "count"),
    "csat_pct": ("csat", "avg"),
    "one_touch_pct": ("one_touch", "avg"),
}
DASHBOARD_FAMILIES = frozenset(
    {
        "volume",
        "response",
        "resolution",
        "sentiment",
        "backlog",
        "dist_status",
        "dist_priority",
        "sla",
        "dashboard",
        "solves",
        "satisfaction",
    }
)
PERFORMANCE_FAMILIES = frozenset({"response", "resolution", "sla", "performance", "dist_priority"})
# The SLA compliance of both runs on the policy's clock, which a schedule change moves.
CLOCK_FAMILIES = frozenset({"schedules"})


def change_pct(value: float | None, previous: float | None) -> float | None:
    """Percent change from `previous` to `value`; None when either is missing or previous is 0."""
    if value is None or previous is None or previous == 0:
        return None
    # abs() keeps the sign meaning "went up" even when the previous value was negative (sentiment).
    return (value - previous) / abs(previous) * 100.0


def dashboard(
    session: Session,
    *,
    org_id: int,
    window: Window,
    filters: Filters,
    targets: dict[str, dict[str, float]],
    now: datetime,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """KPIs (durations on `clock`) against the previous period, backlog, a daily ticket_count series,
    distributions and SLA compliance under the policy in force. `targets` only key the cache: the
    policy holds the targets."""
    start, end = window.start, window.end
    current_window = {"org_id": org_id, "start": start, "end": end, "filters": filters}
    days = window.buckets("daily")
    # Both periods in one read a metric: two buckets, the one before and this one.
    periods = Buckets("periods", window.tz, (window.previous_start(), start, end))

    def measures(s: Session) -> tuple[dict[str, Any], dict[str, Any]]:
        now_and_before: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        for name, (metric, statistic) in KPIS.items():
            cells = queries.aggregate(
                s,
                org_id=org_id,
                metric=metric,
                start=periods.bounds[0],
                end=end,
                filters=filters,
                buckets=periods,
                clock=clock,
            )
            empty = queries.empty_stats(metric, ())
            for out, index in zip(now_and_before, (1, 0), strict=True):
                out[name] = (cells.get(((), index)) or empty)[statistic]
        return now_and_before

    def series_and_current(s: Session) -> dict[str, Any]:
        series = queries.time_series(s, metric="ticket_count", buckets=days, **current_window)
        # The backlog at each day's end (the status history's running sum): "tickets and backlog over time".
        backlog = queries.time_series(s, metric="backlog", buckets=days, **current_window)
        statuses = current.distribution(s, field="status", **current_window)
        return {
            "backlog": current.backlog(statuses),
            "ticket_count_series": [{"bucket": p["bucket"], "count": p["count"]} for p in series["points"]],
            "backlog_series": [{"bucket": p["bucket"], "count": p["count"]} for p in backlog["points"]],
            "distributions": {
                "status": statuses,
                "priority": current.distribution(s, field="priority", **current_window),
            },
        }

    def sla(s: Session) -> dict[str, Any]:
        return sla_compliance.report(s, now=now, **current_window)

    # Side by side: the SLA read, the KPIs of both periods, and the rest.
    (values, previous), rest, compliance = side_by_side.run(session, [measures, series_and_current, sla])
    kpis = {
        name: {
            "value": values[name],
            "previous": previous[name],
            "change_pct": change_pct(values[name], previous[name]),
        }
        for name in KPIS
    }
    return {"kpis": kpis, **rest, "sla": compliance, **clock.echo()}


def performance(
    session: Session,
    *,
    org_id: int,
    window: Window,
    filters: Filters,
    now: datetime,
    clock: Clock = CALENDAR,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Percentiles, avg and count of response and resolution time on `clock`; SLA compliance under the
    policy in force (its own clock), overall, by priority and by `group_by`, and the targets used."""
    ranged = {"org_id": org_id, "start": window.start, "end": window.end, "filters": filters}

    def duration(metric: str) -> Read:
        def read(s: Session) -> dict[str, Any]:
            return queries.measure(
                s, metric=metric, percentiles=PERFORMANCE_PERCENTILES, clock=clock, **ranged
            )

        return read

    # Side by side: the SLA read and each duration's percentiles (exact ones scan the period's events).
    report, response, resolution = side_by_side.run(
        session,
        [
            lambda s: sla_compliance.report(s, now=now, group_by=group_by, **ranged),
            duration("response_time"),
            duration("resolution_time"),
        ],
    )
    policy = policy_for(session, org_id)
    return {
        **clock.echo(),
        "response_time": response,
        "resolution_time": resolution,
        "sla": report,
        "targets": {
            priority: {
                # The first contract's names, then the policy's.
                "first_response_hours": policy.target(priority, "first_reply"),
                "resolution_hours": policy.target(priority, "resolution"),
                "first_reply_hours": policy.target(priority, "first_reply"),
                "next_reply_hours": policy.target(priority, "next_reply"),
            }
            for priority in PRIORITIES
        },
    }
