"""Aggregations: several metrics by group (and bucket), run here or by a job from its params.

The API validates a request once and builds an `AggregationQuery`; its `params()` key the cache,
deduplicate jobs, and are all a worker needs to rebuild it (`from_params`) and run it later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import cost, provenance, queries, side_by_side
from webapp.analytics.cells import CellKey
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.metrics import DEFAULT_PERCENTILES, METRICS, families_of
from webapp.analytics.planner import grain_for
from webapp.analytics.rollups import floor_hour
from webapp.analytics.sql import filter_sql
from webapp.analytics.window import Window
from webapp.core.filters import Filters
from webapp.core.timeutil import utcnow

MAX_ROWS = 100_000
HOUR_SECONDS = 3600


@dataclass(frozen=True)
class AggregationQuery:
    """What to aggregate, over which window, and how percentiles may be answered."""

    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    window: Window
    filters: Filters
    percentiles: tuple[int, ...] = DEFAULT_PERCENTILES
    exact: bool = False
    # Percentiles from merged sketches above this many measurements; None: always exact.
    approximate_above: int | None = None
    # What the duration metrics are counted in.
    clock: Clock = CALENDAR

    @classmethod
    def of(
        cls,
        *,
        metrics: Iterable[str],
        group_by: Iterable[str],
        window: Window,
        filters: Filters,
        percentiles: Iterable[int] | None,
        exact: bool = False,
        approximate_above: int | None = None,
        clock: Clock = CALENDAR,
    ) -> AggregationQuery:
        """The query of validated request values, in canonical form (each name once, percentiles sorted)."""
        return cls(
            metrics=tuple(dict.fromkeys(metrics)),
            group_by=tuple(dict.fromkeys(group_by)),
            window=window,
            filters=filters,
            percentiles=DEFAULT_PERCENTILES if percentiles is None else tuple(sorted(set(percentiles))),
            exact=exact,
            approximate_above=None if exact else approximate_above,
            clock=clock,
        )

    def params(self) -> dict[str, Any]:
        """The query as JSON: the cache key of its answer and the params of its job."""
        params: dict[str, Any] = {
            "metrics": list(self.metrics),
            "group_by": list(self.group_by),
            "granularity": self.window.granularity,
            "percentiles": list(self.percentiles),
            "filters": self.filters,
            **self.window.params(),
        }
        # Only when asked, so the keys of requests without them stay as they were.
        if self.exact:
            params["exact"] = True
        if self.approximate_above is not None:
            params["approximate_above"] = self.approximate_above
        params.update(self.clock.params())
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AggregationQuery:
        """The query `params()` wrote (at the job boundary)."""
        return cls(
            metrics=tuple(params["metrics"]),
            group_by=tuple(params["group_by"]),
            window=Window.from_params(params),
            filters=params["filters"],
            percentiles=tuple(params["percentiles"]),
            exact=bool(params.get("exact")),
            approximate_above=params.get("approximate_above"),
            clock=Clock.from_params(params),
        )

    def families(self) -> set[str]:
        """The cache families the answer depends on."""
        return families_of(self.metrics) | self.clock.families()

    def estimate(self, free_text_groups: int | None = None) -> cost.Estimate:
        """The size of the answer, as far as it is known before any query (`free_text_groups`:
        cost.groups)."""
        return cost.aggregation(
            metrics=self.metrics,
            group_by=self.group_by,
            window=self.window,
            filters=self.filters,
            percentiles=self.percentiles,
            free_text_groups=free_text_groups,
        )

    def free_text(self) -> list[str]:
        """The group_by dimensions whose values only the data knows (cost.free_text)."""
        return cost.free_text(self.group_by, self.filters)

    def options(self) -> provenance.ReadOptions:
        """How the reads may be answered: `exact` forces raw events, else rollups and maybe sketches."""
        if self.exact:
            return provenance.ReadOptions(rollups=False)
        return provenance.ReadOptions(approximate_above=self.approximate_above)


def _sort_key(group: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in group)


def run_aggregation(
    session: Session, *, org_id: int, query: AggregationQuery, max_cells: int | None = None
) -> dict[str, Any]:
    """Compute `query` for `org_id`: one row per group (and bucket) with each metric's statistics;
    TooCostly once the groups are known when the answer would hold more than `max_cells` cells."""
    window = query.window
    buckets = window.buckets() if window.granularity else None

    def read(metric: str) -> side_by_side.Read:
        def aggregate(s: Session) -> dict[CellKey, dict[str, Any]]:
            return queries.aggregate(
                s,
                org_id=org_id,
                metric=metric,
                start=window.start,
                end=window.end,
                filters=query.filters,
                group_by=query.group_by,
                buckets=buckets,
                percentiles=() if METRICS[metric].is_count else query.percentiles,
                # A job runs this outside any request, so the options travel with the query.
                options=query.options(),
                clock=query.clock,
            )

        return aggregate

    # Side by side: each metric is a statement of its own (two durations with percentiles at 10M
    # tickets: 180 ms one after the other).
    answers = side_by_side.run(session, [read(metric) for metric in query.metrics])
    per_metric = dict(zip(query.metrics, answers, strict=True))
    # Without group_by there is one group; with it, the groups that had events in the range.
    groups = {group for cells in per_metric.values() for group, _ in cells} if query.group_by else {()}
    indexes: list[int | None] = list(range(len(buckets))) if buckets is not None else [None]
    if max_cells is not None:
        estimate = query.estimate()
        cost.Estimate(len(groups), len(indexes), estimate.statistics, estimate.metrics).check(
            max_cells, field="group_by"
        )
    rows = len(groups) * len(indexes)
    if rows > MAX_ROWS:
        # Refused as the cell limit is (too_costly, naming the estimate and the limit).
        raise cost.TooCostly(
            f"the answer would hold {rows:,} rows ({len(groups)} groups x {len(indexes)} buckets), more "
            f"than the limit of {MAX_ROWS:,} rows; use fewer group_by fields, a coarser granularity or a "
            "narrower range",
            "group_by",
            {
                "estimate": rows,
                "limit": MAX_ROWS,
                "groups": len(groups),
                "buckets": len(indexes),
                "unit": "rows",
            },
        )

    ordered = sorted(groups, key=_sort_key)
    pairs = [(group, dict(zip(query.group_by, group, strict=True))) for group in ordered]
    lookups = [
        (metric, cells.get, queries.empty_stats(metric, query.percentiles))
        for metric, cells in per_metric.items()
    ]
    rows: list[dict[str, Any]] = []
    for index in indexes:
        label = buckets.label(index) if buckets is not None and index is not None else None
        for group, names in pairs:
            key = (group, index)
            row = {"group": names} if label is None else {"group": names, "bucket": label}
            for metric, get, empty in lookups:
                row[metric] = get(key) or empty
            rows.append(row)
    return {
        "metrics": list(query.metrics),
        "units": {metric: METRICS[metric].unit for metric in query.metrics},
        "group_by": list(query.group_by),
        "granularity": window.granularity,
        "percentiles": list(query.percentiles),
        **window.echo(),
        **query.clock.echo(),
        "filters": query.filters,
        "rows": rows,
    }


def estimated_cost(session: Session, *, org_id: int, query: AggregationQuery) -> int:
    """The planner's estimate of the rows an aggregation reads: cheap, no rows are read.

    Raw events for an exact query or one no rollup grain answers. Otherwise the rollup rows of the
    hours rollups may answer (planner.grain_for's grain) plus the raw events of the rest of the
    range (bucket edges off the UTC hour, the open hour), prorated by time.
    """
    window = query.window
    metrics = sorted(query.metrics)
    types = sorted({METRICS[m].event_type for m in metrics})
    raw = _plan_rows(
        session,
        "SELECT 1 FROM ticket_events e WHERE e.org_id = :org_id"
        " AND e.event_type = ANY(CAST(:types AS text[]))"
        " AND e.occurred_at >= :start AND e.occurred_at < :end",
        {"org_id": org_id, "types": types, "start": window.start, "end": window.end},
    )
    grain = grain_for([*query.filters, *query.group_by])
    if query.exact or grain is None:
        return raw
    # Rollups answer every closed UTC hour that lies inside one bucket: the raw rest is at most an
    # hour on each side of a bound off the UTC hour (Asia/Kolkata's), and the hours not yet closed.
    bounds = window.buckets().bounds if window.granularity else (window.start, window.end)
    off_hour = sum(1 for bound in bounds if bound.minute or bound.second or bound.microsecond)
    closed = floor_hour(utcnow())
    total = (window.end - window.start).total_seconds()
    raw_seconds = min(total, 2 * HOUR_SECONDS * off_hour + max(0.0, (window.end - closed).total_seconds()))
    if raw_seconds >= total:
        return raw
    rolled = _plan_rows(
        session,
        "SELECT 1 FROM analytics_metrics m WHERE m.org_id = :org_id AND m.grain = :grain"
        " AND m.metric = ANY(CAST(:metrics AS text[]))"
        " AND m.bucket_start >= :start AND m.bucket_start < :end",
        {"org_id": org_id, "grain": grain, "metrics": metrics, "start": window.start, "end": window.end},
    )
    return rolled + round(raw * raw_seconds / total)


def _plan_rows(session: Session, sql: str, params: dict[str, Any]) -> int:
    """The rows PostgreSQL's planner expects `sql` to return."""
    plan = session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def queued_estimate(session: Session, *, org_id: int, query: AggregationQuery) -> cost.Estimate:
    """The answer's size as a job about to be queued for it knows it: a free-text group_by's
    combinations counted first (free_text_groups), so no job is queued for an answer its own check
    would refuse."""
    return query.estimate(
        free_text_groups(session, org_id=org_id, query=query) if query.free_text() else None
    )


def free_text_groups(session: Session, *, org_id: int, query: AggregationQuery) -> int:
    """How many combinations of the query's unfiltered free-text group_by dimensions the tickets
    created in its range (and passing its filters) hold: one read of the range's tickets, counted
    before a job is queued (cost.groups)."""
    dimensions = query.free_text()
    params: dict[str, Any] = {"org_id": org_id, "start": query.window.start, "end": query.window.end}
    sql = text(
        f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(f't.{d}' for d in dimensions)} FROM tickets t"
        " WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
        + filter_sql("t", query.filters, params)
        + ") g"
    )
    return int(session.execute(sql, params).scalar_one())
