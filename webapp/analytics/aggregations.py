"""Aggregations: several metrics by group (and bucket), run here or by a job from canonical params.

The API validates a request into canonical params (JSON, times in UTC) once; the same params key the
cache, deduplicate jobs, and are all a worker needs to run `run_aggregation` later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from webapp.analytics import queries
from webapp.analytics.buckets import GRANULARITIES, Buckets, make_buckets, resolve_range
from webapp.analytics.metrics import DEFAULT_PERCENTILES, GROUPABLE, METRICS, families_of
from webapp.core.filters import parse_filters
from webapp.core.timeutil import parse_datetime, zone

MAX_ROWS = 100_000


class QueryError(ValueError):
    """A request the analytics cannot answer as asked; `field` names the culprit."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _names(values: Sequence[str], allowed: Sequence[str], field: str) -> list[str]:
    out = list(dict.fromkeys(values))
    unknown = [v for v in out if v not in allowed]
    if unknown:
        raise QueryError(f"unknown {field} {unknown[0]!r}; allowed: {', '.join(allowed)}", field)
    return out


def validate_percentiles(values: Sequence[int] | None) -> list[int]:
    """Sorted, unique percentiles, each an integer in 1..99 (None: the defaults)."""
    if values is None:
        return list(DEFAULT_PERCENTILES)
    if any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 99 for p in values):
        raise QueryError("percentiles must be integers from 1 to 99, e.g. [50, 95, 99]", "percentiles")
    return sorted(set(values))


def canonical_params(request: Mapping[str, Any], *, default_tz: str, now: datetime) -> dict[str, Any]:
    """The validated canonical form of an aggregation request (or QueryError, BucketError, ...)."""
    metrics = _names(request.get("metrics") or [], tuple(METRICS), "metric")
    if not metrics:
        raise QueryError(f"metrics must name at least one of {', '.join(METRICS)}", "metrics")
    group_by = _names(request.get("group_by") or [], GROUPABLE, "group_by")
    granularity = request.get("granularity")
    if granularity is not None and granularity not in GRANULARITIES:
        raise QueryError(
            f"unknown granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)}", "granularity"
        )
    tz_name = request.get("tz") or default_tz
    tz = zone(tz_name)
    filters_in = request.get("filters") or {}
    unknown = [name for name in filters_in if name not in GROUPABLE]
    if unknown:
        raise QueryError(f"unknown filter {unknown[0]!r}; allowed: {', '.join(GROUPABLE)}", "filters")
    filters = parse_filters(filters_in)
    start = parse_datetime(request["start"], tz, "start") if request.get("start") else None
    end = parse_datetime(request["end"], tz, "end") if request.get("end") else None
    start, end = resolve_range(start, end, tz, now)
    if granularity is not None:
        make_buckets(granularity, start, end, tz)  # refuses too many buckets before any work is queued
    params = {
        "metrics": metrics,
        "group_by": group_by,
        "granularity": granularity,
        "percentiles": validate_percentiles(request.get("percentiles")),
        "filters": filters,
        "tz": tz.key,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
    }
    # Only when asked, so the cache keys of requests without it stay as they were.
    if request.get("exact"):
        params["exact"] = True
    return params


def families(params: Mapping[str, Any]) -> set[str]:
    """The cache families an aggregation's answer depends on."""
    return families_of(params["metrics"])


def _sort_key(group: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in group)


def run_aggregation(session: Session, *, org_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """Compute the aggregation described by canonical `params` (from canonical_params) for `org_id`."""
    tz = zone(params["tz"])
    start = datetime.fromisoformat(params["start"])
    end = datetime.fromisoformat(params["end"])
    group_by: list[str] = list(params["group_by"])
    percentiles: list[int] = list(params["percentiles"])
    buckets: Buckets | None = None
    if params.get("granularity"):
        buckets = make_buckets(params["granularity"], start, end, tz)

    # A job runs this outside any request, so the options travel in the params.
    options = (
        queries.ReadOptions(rollups=False)
        if params.get("exact")
        else queries.ReadOptions(approximate_above=params.get("approximate_above"))
    )
    per_metric = {
        metric: queries.aggregate(
            session,
            org_id=org_id,
            metric=metric,
            start=start,
            end=end,
            filters=params["filters"],
            group_by=group_by,
            buckets=buckets,
            percentiles=() if METRICS[metric].is_count else percentiles,
            options=options,
        )
        for metric in params["metrics"]
    }
    # Without group_by there is one group; with it, the groups that had events in the range.
    groups = {group for cells in per_metric.values() for group, _ in cells} if group_by else {()}
    indexes: list[int | None] = list(range(len(buckets))) if buckets is not None else [None]
    if len(groups) * len(indexes) > MAX_ROWS:
        raise QueryError(
            f"the answer would hold more than {MAX_ROWS} rows; use fewer group_by fields, "
            "a coarser granularity or a narrower range",
            "group_by",
        )

    rows = []
    for index in indexes:
        for group in sorted(groups, key=_sort_key):
            row: dict[str, Any] = {"group": dict(zip(group_by, group, strict=True))}
            if buckets is not None and index is not None:
                row["bucket"] = buckets.label(index)
            for metric, cells in per_metric.items():
                row[metric] = cells.get((group, index)) or queries.empty_stats(metric, percentiles)
            rows.append(row)
    return {
        "metrics": list(params["metrics"]),
        "group_by": group_by,
        "granularity": params.get("granularity"),
        "percentiles": percentiles,
        "timezone": tz.key,
        "start": start.astimezone(tz).isoformat(),
        "end": end.astimezone(tz).isoformat(),
        "filters": params["filters"],
        "rows": rows,
    }


def estimated_cost(session: Session, *, org_id: int, params: Mapping[str, Any]) -> int:
    """Rows an aggregation would scan, from the planner's statistics."""
    return queries.estimate_rows(
        session,
        org_id=org_id,
        event_types=sorted({METRICS[m].event_type for m in params["metrics"]}),
        start=datetime.fromisoformat(params["start"]),
        end=datetime.fromisoformat(params["end"]),
    )
