"""SQL for time series, aggregations, distributions, percentiles and backlog, computed from the raw tables.

Every column name in the SQL text comes from an allowlist (metrics.METRICS, metrics.GROUPABLE,
metrics.DISTRIBUTION_FIELDS); every value is a bound parameter. Buckets arrive as a sorted
timestamptz[] of boundaries and rows find theirs with width_bucket (a binary search), so the
time-zone and daylight-saving logic lives in buckets.py alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics.buckets import Buckets
from webapp.analytics.metrics import DISTRIBUTION_FIELDS, GROUPABLE, METRICS, Metric
from webapp.dimensions import ENUMERATED
from webapp.models.tickets import RESOLVED_STATUSES, STATUSES

Filters = dict[str, list[str | None]]
# One aggregated cell: its group values (in group_by order) and its 0-based bucket index or None.
CellKey = tuple[tuple[str | None, ...], int | None]


def _column(name: str, allowed: Sequence[str]) -> str:
    # The last line of defence: a name not in the allowlist never becomes SQL.
    if name not in allowed:
        raise ValueError(f"{name!r} is not one of {', '.join(allowed)}")
    return name


def filter_sql(alias: str, filters: Filters, params: dict[str, Any]) -> str:
    """` AND ...` clauses restricting `alias`'s dimension columns to the filter values (None = IS NULL)."""
    clauses = []
    for name in GROUPABLE:
        values = filters.get(name)
        if values is None:
            continue
        column = f"{alias}.{_column(name, GROUPABLE)}"
        present = [v for v in values if v is not None]
        parts = []
        if present:
            key = f"f_{alias}_{name}"
            params[key] = present
            parts.append(f"{column} = ANY(CAST(:{key} AS text[]))")
        if None in values:
            parts.append(f"{column} IS NULL")
        clauses.append(f" AND ({' OR '.join(parts) if parts else 'false'})")
    return "".join(clauses)


def _events_source(
    metric: Metric, org_id: int, start: datetime, end: datetime, filters: Filters, params: dict[str, Any]
) -> str:
    """FROM and WHERE over the events that carry `metric` in [start, end)."""
    params.update(org_id=org_id, event_type=metric.event_type, start=start, end=end)
    join = " JOIN tickets t ON t.id = e.ticket_id AND t.org_id = e.org_id" if metric.joins_ticket else ""
    return (
        f"FROM ticket_events e{join}"
        " WHERE e.org_id = :org_id AND e.event_type = :event_type"
        " AND e.occurred_at >= :start AND e.occurred_at < :end" + filter_sql("e", filters, params)
    )


def _value_sql(metric: Metric) -> str:
    return metric.value_sql or "CAST(NULL AS double precision)"


def _count_sql(metric: Metric) -> str:
    # A count metric counts events; a measured one counts measurements (NULL sentiment is skipped).
    return "count(*)" if metric.is_count else "count(v)"


def time_series(
    session: Session,
    *,
    org_id: int,
    metric: str,
    buckets: Buckets,
    start: datetime,
    end: datetime,
    filters: Filters,
) -> dict[str, Any]:
    """Every bucket's point (count 0, value None when empty) and the summary of `metric` in [start, end)."""
    definition = METRICS[metric]
    params: dict[str, Any] = {"bounds": list(buckets.bounds)}
    source = _events_source(definition, org_id, start, end, filters, params)
    sql = text(
        "SELECT GROUPING(idx) AS is_total, idx,"
        f" {_count_sql(definition)} AS n, avg(v) AS avg, min(v) AS min, max(v) AS max"
        " FROM (SELECT width_bucket(e.occurred_at, CAST(:bounds AS timestamptz[])) AS idx,"
        f" {_value_sql(definition)} AS v {source}) s"
        " GROUP BY GROUPING SETS ((idx), ())"
    )
    cells: dict[int, Any] = {}
    total = None
    for row in session.execute(sql, params):
        if row.is_total:
            total = row
        else:
            cells[row.idx - 1] = row

    points = []
    for index in range(len(buckets)):
        row = cells.get(index)
        count = int(row.n) if row is not None else 0
        if definition.is_count:
            point = {"bucket": buckets.label(index), "value": count, "count": count, "min": None, "max": None}
        else:
            point = {
                "bucket": buckets.label(index),
                "value": row.avg if row is not None and count else None,
                "count": count,
                "min": row.min if row is not None else None,
                "max": row.max if row is not None else None,
            }
        points.append(point)

    if definition.is_count:
        counts = [p["count"] for p in points]
        summary = {
            "total_count": sum(counts),
            "avg": sum(counts) / len(counts) if counts else None,
            "min": min(counts) if counts else None,
            "max": max(counts) if counts else None,
        }
    else:
        count = int(total.n) if total is not None else 0
        summary = {
            "total_count": count,
            "avg": total.avg if count else None,
            "min": total.min if count else None,
            "max": total.max if count else None,
        }
    return {"points": points, "summary": summary}


def empty_stats(metric: str, percentiles: Sequence[int]) -> dict[str, Any]:
    """The statistics of a cell with no measurements."""
    if METRICS[metric].is_count:
        return {"count": 0}
    return {"count": 0, "avg": None, "min": None, "max": None, **{f"p{p}": None for p in percentiles}}


def aggregate(
    session: Session,
    *,
    org_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str] = (),
    buckets: Buckets | None = None,
    percentiles: Sequence[int] = (),
) -> dict[CellKey, dict[str, Any]]:
    """Count (and avg, min, max, exact percentiles) of `metric` per group and bucket with events."""
    definition = METRICS[metric]
    params: dict[str, Any] = {}
    source = _events_source(definition, org_id, start, end, filters, params)
    inner = [f"e.{_column(name, GROUPABLE)} AS g{i}" for i, name in enumerate(group_by)]
    keys = [f"g{i}" for i in range(len(group_by))]
    if buckets is not None:
        params["bounds"] = list(buckets.bounds)
        inner.append("width_bucket(e.occurred_at, CAST(:bounds AS timestamptz[])) AS idx")
        keys.append("idx")
    inner.append(f"{_value_sql(definition)} AS v")
    outer = [*keys, f"{_count_sql(definition)} AS n"]
    if not definition.is_count:
        outer += ["avg(v) AS avg", "min(v) AS min", "max(v) AS max"]
        if percentiles:
            # percentile_cont interpolates linearly between closest ranks, as numpy's default does.
            params["fractions"] = [p / 100 for p in percentiles]
            outer.append(
                "percentile_cont(CAST(:fractions AS double precision[])) WITHIN GROUP (ORDER BY v) AS pct"
            )
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sql = text(f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} {source}) s{group}")

    cells: dict[CellKey, dict[str, Any]] = {}
    for row in session.execute(sql, params):
        mapping = row._mapping
        count = int(mapping["n"])
        if count == 0 and keys:
            continue
        group_values = tuple(mapping[f"g{i}"] for i in range(len(group_by)))
        index = mapping["idx"] - 1 if buckets is not None else None
        stats: dict[str, Any] = {"count": count}
        if not definition.is_count:
            stats.update(avg=mapping["avg"], min=mapping["min"], max=mapping["max"])
            values = mapping["pct"] if percentiles else None
            for i, p in enumerate(percentiles):
                stats[f"p{p}"] = values[i] if values is not None else None
        cells[(group_values, index)] = stats
    return cells


def measure(
    session: Session,
    *,
    org_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    filters: Filters,
    percentiles: Sequence[int] = (),
) -> dict[str, Any]:
    """Count, avg, min, max (and percentiles) of `metric` over the whole of [start, end)."""
    cells = aggregate(
        session, org_id=org_id, metric=metric, start=start, end=end, filters=filters, percentiles=percentiles
    )
    return cells.get(((), None)) or empty_stats(metric, percentiles)


def distribution(
    session: Session, *, org_id: int, field: str, start: datetime, end: datetime, filters: Filters
) -> dict[str, Any]:
    """Current values of `field` over the tickets created in [start, end), with count and share."""
    column = _column(field, DISTRIBUTION_FIELDS)
    params: dict[str, Any] = {"org_id": org_id, "start": start, "end": end}
    sql = text(
        f"SELECT t.{column} AS value, count(*) AS n FROM tickets t"
        " WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
        f"{filter_sql('t', filters, params)} GROUP BY t.{column}"
    )
    counts: dict[str | None, int] = {row.value: int(row.n) for row in session.execute(sql, params)}
    # Enumerated fields list every allowed (or filtered-for) value, so charts keep their legend.
    for value in filters.get(field) or ENUMERATED.get(field, ()):
        counts.setdefault(value, 0)
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return {
        "field": field,
        "total": total,
        "values": [
            {"value": value, "count": count, "share": count / total if total else None}
            for value, count in ordered
        ],
    }


def backlog(session: Session, *, org_id: int, end: datetime, filters: Filters) -> dict[str, Any]:
    """Tickets created before `end` that are not resolved or closed now, by current status."""
    params: dict[str, Any] = {"org_id": org_id, "end": end, "done": list(RESOLVED_STATUSES)}
    sql = text(
        "SELECT t.status, count(*) AS n FROM tickets t"
        " WHERE t.org_id = :org_id AND t.created_at < :end"
        " AND NOT (t.status = ANY(CAST(:done AS text[])))"
        f"{filter_sql('t', filters, params)} GROUP BY t.status"
    )
    by_status = {status: 0 for status in STATUSES if status not in RESOLVED_STATUSES}
    for row in session.execute(sql, params):
        by_status[row.status] = int(row.n)
    return {"count": sum(by_status.values()), "by_status": by_status}


def estimate_rows(
    session: Session, *, org_id: int, event_types: Sequence[str], start: datetime, end: datetime
) -> int:
    """The planner's estimate of the events an aggregation scans: cheap, no rows are read."""
    sql = text(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM ticket_events e WHERE e.org_id = :org_id"
        " AND e.event_type = ANY(CAST(:types AS text[])) AND e.occurred_at >= :start AND e.occurred_at < :end"
    )
    plan = session.execute(
        sql, {"org_id": org_id, "types": list(event_types), "start": start, "end": end}
    ).scalar()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
