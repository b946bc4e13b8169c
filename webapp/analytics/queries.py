"""Metric reads: time series, aggregations by group and bucket, and whole-range measures.

Every column name in the SQL text comes from an allowlist (metrics.METRICS, metrics.GROUPABLE, see
sql.py); every value is a bound parameter. Buckets arrive as a sorted timestamptz[] of boundaries and
rows find theirs with width_bucket (a binary search), so the time-zone and daylight-saving logic
lives in buckets.py alone.

Metric reads combine hourly rollups (rollups.py) with raw events. A UTC hour is read from rollups
when it is closed, lies wholly inside one bucket and inside [start, end), and no dirty mark covers
it (coverage.py); everything else of the range (partial edges, bucket edges that are not on a UTC
hour as in Asia/Kolkata, the open tail, hours changed since their rollup was built) is read from raw
events, all in one statement (cells.py), so one snapshot answers both parts and counts, sums, min
and max are those of the raw events. Percentiles are exact (percentile_cont over raw events) unless
the caller allows sketches above a number of measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import business_values, provenance, sketch
from webapp.analytics.buckets import Buckets
from webapp.analytics.cells import Cell, CellKey, read_cells, read_counts
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.metrics import METRICS, Metric
from webapp.analytics.provenance import ReadOptions
from webapp.analytics.raw_reads import measured_value, raw_aggregate
from webapp.analytics.sql import bound_list, bucket_index, count_sql, events_source
from webapp.core.filters import Filters
from webapp.core.timeutil import EARLIEST


def _cells(session: Session, definition: Metric, **read: Any) -> dict[CellKey, Cell]:
    """cells.read_cells, noting in the current reading which sides answered."""
    cells, sources = read_cells(session, definition, **read)
    if sources:
        provenance.note(rollup=True in sources, raw=False in sources)
    return cells


def time_series(
    session: Session,
    *,
    org_id: int,
    metric: str,
    buckets: Buckets,
    start: datetime,
    end: datetime,
    filters: Filters,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """Every bucket's point (count 0, value None when empty) and the summary of `metric` in [start, end),
    a duration counted on `clock`."""
    definition = METRICS[metric]
    if definition.kind in ("running", "difference"):
        window = {"org_id": org_id, "start": start, "end": end, "filters": filters}
        cells = aggregate(session, metric=metric, buckets=buckets, **window)
        return _counting_series(definition, buckets, cells)
    if not provenance.current_options().rollups:
        return _raw_time_series(
            session,
            org_id=org_id,
            definition=definition,
            buckets=buckets,
            start=start,
            end=end,
            filters=filters,
            clock=clock,
        )
    by_index = _cells(
        session,
        definition,
        org_id=org_id,
        start=start,
        end=end,
        filters=filters,
        group_by=(),
        bounds=buckets.bounds,
        clock=clock,
    )
    cells: dict[int, Any] = {}
    total = Cell()
    for (_, index), cell in by_index.items():
        assert index is not None
        cells[index] = _Row(cell.count, cell.avg, cell.min, cell.max)
        total.add(cell.count, cell.sum, cell.min, cell.max)
    return _series(definition, buckets, cells, _Row(total.count, total.avg, total.min, total.max))


@dataclass(frozen=True)
class _Row:
    n: int
    avg: float | None
    min: float | None
    max: float | None


def _raw_time_series(
    session: Session,
    *,
    org_id: int,
    definition: Metric,
    buckets: Buckets,
    start: datetime,
    end: datetime,
    filters: Filters,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """time_series computed from raw events alone."""
    params: dict[str, Any] = {"bounds": bound_list(buckets.bounds)}
    source = events_source(definition, org_id, start, end, filters, params)
    value, once = measured_value(session, definition, clock, params, start, end)
    sql = text(
        "SELECT GROUPING(idx) AS is_total, idx,"
        f" {count_sql(definition)} AS n, avg(v) AS avg, min(v) AS min, max(v) AS max"
        f" FROM (SELECT {bucket_index('e.occurred_at')} AS idx,"
        f" {value} AS v {source}{once}) s"
        " GROUP BY GROUPING SETS ((idx), ())"
    )
    provenance.note(raw=True)
    cells: dict[int, Any] = {}
    total = None
    for row in session.execute(sql, params).all():
        if row.is_total:
            total = row
        else:
            cells[row.idx - 1] = row
    return _series(definition, buckets, cells, total)


def _series(definition: Metric, buckets: Buckets, cells: dict[int, Any], total: Any) -> dict[str, Any]:
    """Points for every bucket and the summary, from per-bucket rows (n, avg, min, max) and the total."""
    points = []
    percent = definition.kind == "percent"
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
                "min": row.min if row is not None and not percent else None,
                "max": row.max if row is not None and not percent else None,
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
            "min": total.min if count and not percent else None,
            "max": total.max if count and not percent else None,
        }
    return {"points": points, "summary": summary}


def _counting_series(
    definition: Metric, buckets: Buckets, cells: dict[CellKey, dict[str, Any]]
) -> dict[str, Any]:
    """Points and summary of backlog or net_flow from their per-bucket cells (aggregate's).

    backlog: value = count = the tickets in it at the bucket's end; the summary's total_count is the
    last point. net_flow: value = created - solved, count = created + solved; total_count is the
    range's net flow. For both, avg, min and max are over the points' values.
    """
    points = []
    for index in range(len(buckets)):
        stats = cells.get(((), index)) or {"count": 0, "value": 0}
        points.append(
            {
                "bucket": buckets.label(index),
                "value": stats["value"],
                "count": stats["count"],
                "min": None,
                "max": None,
            }
        )
    values = [p["value"] for p in points]
    last = values[-1] if values else 0
    summary = {
        "total_count": last if definition.kind == "running" else sum(values),
        "avg": sum(values) / len(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }
    return {"points": points, "summary": summary}


def empty_stats(metric: str, percentiles: Sequence[int]) -> dict[str, Any]:
    """The statistics of a cell with no measurements."""
    definition = METRICS[metric]
    if definition.is_count:
        return {"count": 0}
    if definition.kind in ("running", "difference"):
        return {"count": 0, "value": 0}
    if definition.kind == "percent":
        return {"count": 0, "avg": None, "min": None, "max": None}
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
    options: ReadOptions | None = None,
    clock: Clock = CALENDAR,
) -> dict[CellKey, dict[str, Any]]:
    """Count (and avg, min, max, percentiles) of `metric` per group and bucket with events, a duration
    counted on `clock`.

    Percentiles are exact unless `options` (default: the current reading's) allow sketches and the
    measurements outnumber its threshold; then they are within sketch.ALPHA of exact.
    """
    options = options or provenance.current_options()
    definition = METRICS[metric]
    window = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "filters": filters,
        "group_by": group_by,
    }
    if definition.kind == "running":
        return _running(session, definition, buckets=buckets, options=options, **window)
    if definition.kind == "difference":
        return _difference(session, definition, buckets=buckets, options=options, **window)
    if not definition.has_percentiles:
        percentiles = ()
    window["clock"] = clock
    if not options.rollups:
        return raw_aggregate(session, definition, buckets=buckets, percentiles=percentiles, **window)
    bounds = buckets.bounds if buckets is not None else None
    wants_percentiles = bool(percentiles) and not definition.is_count
    if wants_percentiles and options.approximate_above is None:
        return _exact(session, definition, buckets=buckets, percentiles=percentiles, **window)
    keep_empty = not (group_by or buckets is not None)
    if definition.is_count:  # the common hourly case: one small dict a cell, nothing else to do
        counts, sources = read_counts(session, definition, bounds=bounds, **window)
        if sources:
            provenance.note(rollup=True in sources, raw=False in sources)
        return {key: {"count": count} for key, count in counts.items() if count or keep_empty}
    # One read brings counts and sketches together: the counts choose exact or sketches afterwards.
    cells, sources = read_cells(session, definition, bounds=bounds, sketches=wants_percentiles, **window)
    if wants_percentiles:
        measured = sum(cell.count for cell in cells.values())
        assert options.approximate_above is not None
        if measured <= options.approximate_above:
            return _exact(session, definition, buckets=buckets, percentiles=percentiles, **window)
        provenance.note(approximate=True)
    if sources:
        provenance.note(rollup=True in sources, raw=False in sources)
    out: dict[CellKey, dict[str, Any]] = {}
    kept = [(key, cell) for key, cell in cells.items() if cell.count or keep_empty]
    if wants_percentiles and definition.kind != "percent":
        # Every cell's sketches merged in one pass (a dense array of groups by keys).
        estimates = sketch.quantiles_by_group(
            [cell.sketches for _, cell in kept],
            [p / 100 for p in percentiles],
            lows=[cell.min for _, cell in kept],
            highs=[cell.max for _, cell in kept],
        )
    for i, (key, cell) in enumerate(kept):
        stats: dict[str, Any] = {"count": cell.count}
        if definition.kind == "percent":
            stats.update(avg=cell.avg, min=None, max=None)
        else:
            stats.update(avg=cell.avg, min=cell.min, max=cell.max)
            if wants_percentiles:
                stats.update({f"p{p}": v for p, v in zip(percentiles, estimates[i], strict=True)})
        out[key] = stats
    return out


def _exact(
    session: Session, definition: Metric, *, clock: Clock, **window: Any
) -> dict[CellKey, dict[str, Any]]:
    """Exact percentiles: on a business clock from the stored business values where they hold (and raw
    events elsewhere), else from raw events."""
    clock = clock.for_metric(definition)
    if not clock.business:
        return raw_aggregate(session, definition, clock=clock, **window)
    cells, sources = business_values.exact_aggregate(session, definition, clock, **window)
    provenance.note(rollup=True in sources, raw=False in sources or not sources)
    return cells


def _running(
    session: Session,
    definition: Metric,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str] = (),
    buckets: Buckets | None = None,
    options: ReadOptions,
) -> dict[CellKey, dict[str, Any]]:
    """backlog per group at each bucket's end (or at `end`): every step strictly before that instant.

    The steps before `start` are one sum (hourly rollups of every closed hour, so no ticket is read),
    then each bucket adds its own: a running sum, never a scan of the tickets' histories.
    """
    window = {"org_id": org_id, "filters": filters, "group_by": group_by}
    if options.rollups:
        before, steps = _prefix_and_steps(
            session, definition, start=start, end=end, buckets=buckets, **window
        )
    else:
        before = _sums(
            session, definition, start=EARLIEST, end=start, buckets=None, options=options, **window
        )
        steps = _sums(session, definition, start=start, end=end, buckets=buckets, options=options, **window)
    groups = {group for group, _ in before} | {group for group, _ in steps}
    indexes: list[int | None] = list(range(len(buckets))) if buckets is not None else [None]
    out: dict[CellKey, dict[str, Any]] = {}
    for group in groups:
        level = before.get((group, None), 0)
        for index in indexes:
            level += steps.get((group, index), 0)
            if level or not (group_by or buckets is not None):
                out[(group, index)] = {"count": level, "value": level}
    return out


def _prefix_and_steps(
    session: Session,
    definition: Metric,
    *,
    start: datetime,
    end: datetime,
    buckets: Buckets | None,
    **window: Any,
) -> tuple[dict[CellKey, int], dict[CellKey, int]]:
    """_sums before `start` (index None) and per bucket of [start, end), in one read of the cells:
    the steps before the range are one more bucket in front, [EARLIEST, start)."""
    bounds = [EARLIEST, *(buckets.bounds if buckets is not None else (start, end))]
    found = _cells(session, definition, start=EARLIEST, end=end, bounds=bounds, **window)
    before: dict[CellKey, int] = {}
    steps: dict[CellKey, int] = {}
    for (group, index), cell in found.items():
        if not cell.count:
            continue
        if index == 0:
            before[(group, None)] = round(cell.sum or 0)
        else:
            steps[(group, index - 1 if buckets is not None else None)] = round(cell.sum or 0)
    return before, steps


def _sums(
    session: Session,
    definition: Metric,
    *,
    options: ReadOptions,
    **window: Any,
) -> dict[CellKey, int]:
    """The sum of the +1/-1 steps of `definition` per group and bucket, for cells that have steps."""
    if not options.rollups:
        provenance.note(raw=True)
        cells = raw_aggregate(session, definition, **window)
        return {key: round(stats["avg"] * stats["count"]) for key, stats in cells.items() if stats["count"]}
    bounds = window["buckets"].bounds if window["buckets"] is not None else None
    read = {k: v for k, v in window.items() if k != "buckets"}
    found = _cells(session, definition, bounds=bounds, **read)
    return {key: round(cell.sum or 0) for key, cell in found.items() if cell.count}


def _difference(
    session: Session,
    definition: Metric,
    *,
    options: ReadOptions,
    buckets: Buckets | None = None,
    **window: Any,
) -> dict[CellKey, dict[str, Any]]:
    """net_flow per group and bucket: value = the signed sum of its parts' counts, count = their total."""
    out: dict[CellKey, dict[str, Any]] = {}
    for part, sign in definition.parts:
        for key, stats in aggregate(session, metric=part, buckets=buckets, options=options, **window).items():
            cell = out.setdefault(key, {"count": 0, "value": 0})
            cell["count"] += stats["count"]
            cell["value"] += sign * stats["count"]
    return out


def measure(
    session: Session,
    *,
    org_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    filters: Filters,
    percentiles: Sequence[int] = (),
    options: ReadOptions | None = None,
    clock: Clock = CALENDAR,
) -> dict[str, Any]:
    """Count, avg, min, max (and percentiles) of `metric` over the whole of [start, end), on `clock`."""
    cells = aggregate(
        session,
        org_id=org_id,
        metric=metric,
        start=start,
        end=end,
        filters=filters,
        percentiles=percentiles,
        options=options,
        clock=clock,
    )
    return cells.get(((), None)) or empty_stats(metric, percentiles)
