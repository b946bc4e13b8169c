"""Current values of metrics for live subscribers: the last 24 hours, per metric."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import cache, queries, read_time
from webapp.analytics.clock import CALENDAR, Clock, bind, value_sql
from webapp.analytics.metrics import METRICS
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import DIMENSIONS

WINDOW = timedelta(hours=24)
# The live window rolls on; a cached value may lag it by at most this long.
LIVE_TTL_SECONDS = 15


def _filter_sql(filters: dict[str, list[str | None]], params: dict[str, Any]) -> str:
    clauses = []
    for name in DIMENSIONS:  # field names only from the allowlist
        values = filters.get(name)
        if not values:
            continue
        present = [v for v in values if v is not None]
        parts = []
        if present:
            params[f"f_{name}"] = present
            parts.append(f"e.{name} = ANY(:f_{name})")
        if None in values:
            parts.append(f"e.{name} IS NULL")
        clauses.append("(" + " OR ".join(parts) + ")")
    return "".join(f" AND {c}" for c in clauses)


def current_values(
    session: Session,
    *,
    org_id: int,
    metrics: list[str],
    filters: dict[str, list[str | None]],
    now: datetime,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """Count, mean, min and max of each metric over the 24 hours before `now`, durations on `clock`."""
    start = now - WINDOW
    out: dict[str, Any] = {}
    for name in metrics:
        metric = METRICS[name]
        if metric.kind != "mean" or metric.value_sql not in (None, "e.value", "t.sentiment_score"):
            out[name] = _measured(
                session, org_id=org_id, name=name, filters=filters, start=start, end=now, clock=clock
            )
            continue
        params: dict[str, Any] = {"org": org_id, "start": start, "end": now, "etype": metric.event_type}
        where = _filter_sql(filters, params)
        if name == "sentiment_score":
            measure, join = "t.sentiment_score", "JOIN tickets t ON t.id = e.ticket_id"
        elif name == "ticket_count":
            measure, join = "NULL::float8", ""
        else:
            measure, join = value_sql(metric, clock), ""
            if clock.business and metric.clocked:
                bind(session, clock, params, start=start, end=now)
        row = session.execute(
            text(
                f"SELECT count(*) AS n, count({measure}) AS m, avg({measure}) AS avg, "
                f"min({measure}) AS min, max({measure}) AS max "
                f"FROM ticket_events e {join} "
                "WHERE e.org_id = :org AND e.event_type = :etype "
                f"AND e.occurred_at >= :start AND e.occurred_at < :end{where}"
            ),
            params,
        ).one()
        if name == "ticket_count":
            out[name] = {"value": row.n, "count": row.n, "unit": metric.unit}
        else:
            out[name] = {
                "value": float(row.avg) if row.avg is not None else None,
                "count": row.m,
                "min": row.min,
                "max": row.max,
                "unit": metric.unit,
            }
    return {"window": {"start": start.isoformat(), "end": now.isoformat()}, "metrics": out}


def _measured(
    session: Session,
    *,
    org_id: int,
    name: str,
    filters: dict[str, list[str | None]],
    start: datetime,
    end: datetime,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """A support metric over the window as the time series measure it: backlog at `end`, net_flow,
    the percentages (csat, one_touch) and the waits measured at solves (on `clock`)."""
    metric = METRICS[name]
    stats = queries.measure(
        session,
        org_id=org_id,
        metric=name,
        start=start,
        end=end,
        filters=filters,
        clock=clock.for_metric(metric),
    )
    if metric.kind in ("running", "difference"):
        return {"value": stats["value"], "count": stats["count"], "unit": metric.unit}
    if metric.is_count:
        return {"value": stats["count"], "count": stats["count"], "unit": metric.unit}
    return {
        "value": stats["avg"],
        "count": stats["count"],
        "min": stats["min"],
        "max": stats["max"],
        "unit": metric.unit,
    }


def cached_values(
    session: Session,
    client: redis.Redis,
    *,
    org_id: int,
    metrics: list[str],
    filters: dict[str, list[str | None]],
    clock: Clock = CALENDAR,
    budget: read_time.Budget | None = None,
) -> dict[str, Any]:
    """current_values now, through the cache: one computation per distinct subscription at a time,
    charged to the organization's read time (`budget`: see read_time)."""
    families = {family for name in metrics for family in METRICS[name].families} | clock.families()
    params = {"kind": "live", "metrics": sorted(metrics), "filters": filters, **clock.params()}

    def compute() -> dict[str, Any]:
        return current_values(
            session, org_id=org_id, metrics=sorted(metrics), filters=filters, now=utcnow(), clock=clock
        )

    value, _ = cache.read_through(
        client, org_id, families, params, compute, ttl=LIVE_TTL_SECONDS, budget=budget
    )
    return value
