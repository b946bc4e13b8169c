"""Metric reads from raw events alone: the measured value's SQL on a clock, and aggregations with exact
percentiles (percentile_cont). queries.py reads through these where rollups may not answer: exact
percentiles, reads asked without rollups, and the raw side of running sums."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import provenance
from webapp.analytics.buckets import Buckets
from webapp.analytics.cells import CellKey
from webapp.analytics.clock import CALENDAR, Clock, bind
from webapp.analytics.clock import value_sql as clock_value_sql
from webapp.analytics.metrics import GROUPABLE, Metric
from webapp.analytics.sql import bound_list, bucket_index, column, count_sql, events_source
from webapp.core.filters import Filters


def measured_value(
    session: Session, definition: Metric, clock: Clock, params: dict[str, Any], start: datetime, end: datetime
) -> tuple[str, str]:
    """The SQL of the measured value on `clock` (its parameters bound), and what ends its subquery so
    that it is computed once per event, not once per aggregate reading it (" OFFSET 0" if business)."""
    clock = clock.for_metric(definition)
    if not clock.business:
        return clock_value_sql(definition, clock), ""
    bind(session, clock, params, start=start, end=end)
    return clock_value_sql(definition, clock), " OFFSET 0"


def raw_aggregate(
    session: Session,
    definition: Metric,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str] = (),
    buckets: Buckets | None = None,
    percentiles: Sequence[int] = (),
    clock: Clock = CALENDAR,
) -> dict[CellKey, dict[str, Any]]:
    """aggregate computed from raw events alone, with exact percentiles."""
    provenance.note(raw=True)
    params: dict[str, Any] = {}
    source = events_source(definition, org_id, start, end, filters, params)
    value, once = measured_value(session, definition, clock, params, start, end)
    inner = [f"e.{column(name, GROUPABLE)} AS g{i}" for i, name in enumerate(group_by)]
    keys = [f"g{i}" for i in range(len(group_by))]
    if buckets is not None:
        params["bounds"] = bound_list(buckets.bounds)
        inner.append(f"{bucket_index('e.occurred_at')} AS idx")
        keys.append("idx")
    inner.append(f"{value} AS v")
    outer = [*keys, f"{count_sql(definition)} AS n"]
    if not definition.is_count:
        outer += ["avg(v) AS avg", "min(v) AS min", "max(v) AS max"]
        if percentiles:
            # percentile_cont interpolates linearly between closest ranks, as numpy's default does.
            params["fractions"] = [p / 100 for p in percentiles]
            outer.append(
                "percentile_cont(CAST(:fractions AS double precision[])) WITHIN GROUP (ORDER BY v) AS pct"
            )
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sql = text(f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} {source}{once}) s{group}")

    cells: dict[CellKey, dict[str, Any]] = {}
    for row in session.execute(sql, params).all():
        mapping = row._mapping
        count = int(mapping["n"])
        if count == 0 and keys:
            continue
        group_values = tuple(mapping[f"g{i}"] for i in range(len(group_by)))
        index = mapping["idx"] - 1 if buckets is not None else None
        stats: dict[str, Any] = {"count": count}
        if definition.kind == "percent":
            stats.update(avg=mapping["avg"], min=None, max=None)
        elif not definition.is_count:
            stats.update(avg=mapping["avg"], min=mapping["min"], max=mapping["max"])
            values = mapping["pct"] if percentiles else None
            for i, p in enumerate(percentiles):
                stats[f"p{p}"] = values[i] if values is not None else None
        cells[(group_values, index)] = stats
    return cells
