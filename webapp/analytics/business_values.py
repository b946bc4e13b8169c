"""Exact statistics on a business clock from analytics_business_values, not event by event.

An exact percentile needs every measurement. On the calendar each is e.value; on a business clock each
is a schedule's open hours between two instants, which cost some microseconds of SQL per event and made
exact business reads two to three times slower than calendar ones. The business build keeps every
measurement's business value beside the rollups (business_rollups: same hours, same dirty marks, same
schedule version), so an exact read takes the values of the hours the rollups may answer and counts
only the rest (dirty hours, partial hours at the edges, or everything while the schedule's rollups are
out of date) from raw events, inside one statement, as cells.py does for the rollups.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics.buckets import Buckets
from webapp.analytics.cells import CellKey, _piece_params, pieces_sql
from webapp.analytics.clock import Clock, bind, value_sql
from webapp.analytics.metrics import GROUPABLE, Metric
from webapp.analytics.sql import bucket_index, column, filter_sql
from webapp.core.filters import Filters


def exact_aggregate(
    session: Session,
    definition: Metric,
    clock: Clock,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str] = (),
    buckets: Buckets | None = None,
    percentiles: Sequence[int] = (),
) -> tuple[dict[CellKey, dict[str, Any]], set[bool]]:
    """Count, avg, min, max and exact percentiles of a duration metric on a business clock, per group
    and bucket; and which sides answered (True: stored values, False: raw events)."""
    assert clock.business
    assert definition.clocked
    edges = list(buckets.bounds) if buckets is not None else [start, end]
    # Every dimension is kept with each value, so any filter and group is served (grain 0: covered).
    params, _ = _piece_params(definition, org_id=org_id, edges=edges, grain=0, start=start, end=end)
    bind(session, clock, params, start=start, end=end)
    groups = [column(name, GROUPABLE) for name in group_by]
    keys = [f"g{i}" for i in range(len(groups))] + (["idx"] if buckets is not None else [])

    def selected(alias: str, value: str) -> str:
        named = [f"{alias}.{name} AS g{i}" for i, name in enumerate(groups)]
        if buckets is not None:
            named.append(f"{bucket_index(f'{alias}.occurred_at')} AS idx")
        return ", ".join([*named, f"{value} AS v"])

    raw = (
        f"(SELECT false AS rolled, {selected('e', value_sql(definition, clock))}"
        " FROM raw_pieces p CROSS JOIN LATERAL (SELECT e.* FROM ticket_events e"
        " WHERE e.org_id = :org_id AND e.event_type = :event_type"
        " AND e.occurred_at >= p.lo AND e.occurred_at < p.hi OFFSET 0) e"
        f" WHERE true{filter_sql('e', filters, params)} OFFSET 0)"
    )
    wanted = dict.fromkeys(["occurred_at", "value", *groups, *(d for d in GROUPABLE if d in filters)])
    stored = (
        f"(SELECT true AS rolled, {selected('m', 'm.value')}"
        f" FROM rolled_pieces p CROSS JOIN LATERAL (SELECT {', '.join(f'm.{c}' for c in wanted)}"
        " FROM analytics_business_values m WHERE m.org_id = :org_id"
        " AND m.schedule_id = CAST(:schedule_id AS bigint) AND m.metric = :metric"
        f" AND m.occurred_at >= p.lo AND m.occurred_at < p.hi{filter_sql('m', filters, params)} OFFSET 0) m)"
    )
    outer = [*keys, "count(v) AS n", "avg(v) AS avg", "min(v) AS min", "max(v) AS max"]
    outer += ["bool_or(rolled) AS from_values", "bool_or(NOT rolled) AS from_raw"]
    if percentiles:
        params["fractions"] = [p / 100 for p in percentiles]
        outer.append(
            "percentile_cont(CAST(:fractions AS double precision[])) WITHIN GROUP (ORDER BY v) AS pct"
        )
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    pieces = pieces_sql(business=True)
    sql = text(f"{pieces} SELECT {', '.join(outer)} FROM ({raw} UNION ALL {stored}) s{group}")
    cells: dict[CellKey, dict[str, Any]] = {}
    sources: set[bool] = set()
    for row in session.execute(sql, params).all():
        mapping = row._mapping
        count = int(mapping["n"])
        if mapping["from_values"]:
            sources.add(True)
        if mapping["from_raw"]:
            sources.add(False)
        if count == 0 and keys:
            continue
        group_values = tuple(mapping[f"g{i}"] for i in range(len(groups)))
        index = mapping["idx"] - 1 if buckets is not None else None
        stats: dict[str, Any] = {
            "count": count,
            "avg": mapping["avg"],
            "min": mapping["min"],
            "max": mapping["max"],
        }
        values = mapping["pct"] if percentiles else None
        for i, p in enumerate(percentiles):
            stats[f"p{p}"] = values[i] if values is not None else None
        cells[(group_values, index)] = stats
    return cells, sources
