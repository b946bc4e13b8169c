"""SQL for time series, aggregations, distributions, percentiles and backlog.

Every column name in the SQL text comes from an allowlist (metrics.METRICS, metrics.GROUPABLE,
metrics.DISTRIBUTION_FIELDS); every value is a bound parameter. Buckets arrive as a sorted
timestamptz[] of boundaries and rows find theirs with width_bucket (a binary search), so the
time-zone and daylight-saving logic lives in buckets.py alone.

Metric reads combine hourly rollups (rollups.py) with raw events. A UTC hour is read from rollups
when it is closed, lies wholly inside one bucket and inside [start, end), and no dirty mark covers
it; everything else of the range (partial edges, bucket edges that are not on a UTC hour as in
Asia/Kolkata, the open tail, hours changed since their rollup was built) is read from raw events,
all in one statement, so one snapshot answers both parts and counts, sums, min and max are those of
the raw events. Percentiles are exact (percentile_cont over raw events) unless the caller allows
sketches above a number of measurements.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sketch
from webapp.analytics.buckets import Buckets
from webapp.analytics.metrics import DISTRIBUTION_FIELDS, GROUPABLE, METRICS, Metric
from webapp.analytics.rollups import grain_for
from webapp.core.filters import ENUMERATED
from webapp.core.timeutil import utcnow
from webapp.models.tickets import RESOLVED_STATUSES, STATUSES

Filters = dict[str, list[str | None]]
# One aggregated cell: its group values (in group_by order) and its 0-based bucket index or None.
CellKey = tuple[tuple[str | None, ...], int | None]


@dataclass(frozen=True)
class ReadOptions:
    """How metric reads may be answered: from rollups at all, and percentiles from sketches when."""

    rollups: bool = True
    # Percentiles come from merged sketches (approximate) when the measurements exceed this; None: never.
    approximate_above: int | None = None


@dataclass
class Provenance:
    """What the metric reads of one answer were computed from."""

    rollup: bool = False
    raw: bool = False
    approximate: bool = False

    @property
    def source(self) -> str:
        """rollup, raw or mixed (an answer that read nothing counts as raw)."""
        if self.rollup:
            return "mixed" if self.raw else "rollup"
        return "raw"


DEFAULT_OPTIONS = ReadOptions()
_options: ContextVar[ReadOptions] = ContextVar("analytics_read_options", default=DEFAULT_OPTIONS)
_provenance: ContextVar[Provenance | None] = ContextVar("analytics_provenance", default=None)


@contextmanager
def reading(options: ReadOptions) -> Iterator[Provenance]:
    """Run the reads inside with `options`, recording where their answers came from."""
    provenance = Provenance()
    options_token = _options.set(options)
    provenance_token = _provenance.set(provenance)
    try:
        yield provenance
    finally:
        _options.reset(options_token)
        _provenance.reset(provenance_token)


def _note(*, rollup: bool = False, raw: bool = False, approximate: bool = False) -> None:
    provenance = _provenance.get()
    if provenance is not None:
        provenance.rollup |= rollup
        provenance.raw |= raw
        provenance.approximate |= approximate


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


@dataclass
class _Cell:
    """count, sum, min, max (and sketches) of one group and bucket, gathered from raw and rollup parts."""

    count: int = 0
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    sketches: list[bytes] = field(default_factory=list)

    def add(self, count: int, total: float | None, low: float | None, high: float | None) -> None:
        self.count += count
        if total is not None:
            self.sum = total if self.sum is None else self.sum + total
        if low is not None:
            self.min = low if self.min is None else min(self.min, low)
        if high is not None:
            self.max = high if self.max is None else max(self.max, high)

    @property
    def avg(self) -> float | None:
        return self.sum / self.count if self.count and self.sum is not None else None


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _append(pieces: list[list[int]], lo: int, hi: int) -> None:
    if lo >= hi:
        return
    if pieces and pieces[-1][1] == lo:
        pieces[-1][1] = hi
    else:
        pieces.append([lo, hi])


def split_range(
    bounds: Sequence[datetime], start: datetime, end: datetime, now: datetime
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """[start, end) as (covered, uncovered) pieces: covered are closed UTC hours inside one bucket.

    `bounds` are the bucket boundaries (buckets.Buckets.bounds); a rollup hour must not straddle one,
    so zones whose offset is not a whole hour leave each bucket's edges to the raw events. Adjacent
    pieces are merged. (Worked in integer microseconds: a 90-day hourly series has 2,161 bounds.)
    """
    closed = _micros(_floor_hour(now))
    first_us, end_us = _micros(start), _micros(end)
    covered: list[list[int]] = []
    uncovered: list[list[int]] = []
    edges = [_micros(b) for b in bounds]
    for left, right in itertools.pairwise(edges):
        lo, hi = max(left, first_us), min(right, end_us)
        if lo >= hi:
            continue
        first = -(-lo // _HOUR_US) * _HOUR_US  # the first whole UTC hour at or after lo
        last = min(hi // _HOUR_US * _HOUR_US, closed)
        if first < last:
            _append(uncovered, lo, first)
            _append(covered, first, last)
            _append(uncovered, last, hi)
        else:
            _append(uncovered, lo, hi)
    return (
        [(_instant(lo), _instant(hi)) for lo, hi in covered],
        [(_instant(lo), _instant(hi)) for lo, hi in uncovered],
    )


def _cells(
    session: Session,
    definition: Metric,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str],
    bounds: Sequence[datetime] | None,
    sketches: bool = False,
    note: bool = True,
) -> dict[CellKey, _Cell]:
    """Per group and bucket: count, sum, min, max (and sketches) from rollups plus the raw remainder.

    With `bounds` None the whole range is one cell whose index is None.
    """
    edges = list(bounds) if bounds is not None else [start, end]
    grain = grain_for([*filters, *group_by])
    if grain is None:
        covered, uncovered = [], [(start, end)]
    else:
        covered, uncovered = split_range(edges, start, end, utcnow())
    params: dict[str, Any] = {
        "org_id": org_id,
        "event_type": definition.event_type,
        "metric": definition.name,
        "grain": grain,
        "bounds": edges,
        "cov_lo": [lo for lo, _ in covered],
        "cov_hi": [hi for _, hi in covered],
        "unc_lo": [lo for lo, _ in uncovered],
        "unc_hi": [hi for _, hi in uncovered],
        "cov_start": covered[0][0] if covered else start,
        "cov_end": covered[-1][1] if covered else start,
    }
    groups = [_column(name, GROUPABLE) for name in group_by]
    keys = [f"g{i}" for i in range(len(groups))] + ["idx"]
    value = _value_sql(definition)
    join = " JOIN tickets t ON t.id = e.ticket_id AND t.org_id = e.org_id" if definition.joins_ticket else ""
    raw_keys = ", ".join(
        [f"e.{name} AS g{i}" for i, name in enumerate(groups)]
        + ["width_bucket(e.occurred_at, CAST(:bounds AS timestamptz[])) AS idx"]
    )
    rolled_keys = ", ".join(
        [f"m.{name} AS g{i}" for i, name in enumerate(groups)]
        + ["width_bucket(m.bucket_start, CAST(:bounds AS timestamptz[])) AS idx"]
    )
    key_list = ", ".join(keys)
    # LATERAL ... OFFSET 0 keeps each piece its own index range scan, whatever the statistics say.
    raw_events = (
        "FROM raw_pieces p CROSS JOIN LATERAL (SELECT e.* FROM ticket_events e"
        " WHERE e.org_id = :org_id AND e.event_type = :event_type"
        " AND e.occurred_at >= p.lo AND e.occurred_at < p.hi OFFSET 0) e"
        f"{join} WHERE true{filter_sql('e', filters, params)}"
    )
    count = "count(*)" if definition.is_count else "count(v)"
    if sketches and not definition.is_count:
        # Raw values join the rollups' sketches: one (key, count) pair per distinct key of the cell.
        raw = (
            f"SELECT false AS rolled, {key_list}, sum(n_rows) AS n_rows, sum(n) AS n, sum(s) AS s,"
            " min(lo) AS lo, max(hi) AS hi,"
            " string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea)"
            " FILTER (WHERE n > 0) AS sketch"
            f" FROM (SELECT {key_list}, k, count(*) AS n_rows, {count} AS n, sum(v) AS s,"
            " min(v) AS lo, max(v) AS hi"
            f" FROM (SELECT {raw_keys}, {value} AS v, {sketch.sql_key(value)} AS k {raw_events}) r"
            f" GROUP BY {key_list}, k) x GROUP BY {key_list}"
        )
        rolled_sketch = ", string_agg(m.sketch, ''::bytea) AS sketch"
    else:
        raw = (
            f"SELECT false AS rolled, {key_list}, count(*) AS n_rows, {count} AS n, sum(v) AS s,"
            " min(v) AS lo, max(v) AS hi"
            + (", CAST(NULL AS bytea) AS sketch" if sketches else "")
            + f" FROM (SELECT {raw_keys}, {value} AS v {raw_events}) r GROUP BY {key_list}"
        )
        rolled_sketch = ", CAST(NULL AS bytea) AS sketch" if sketches else ""
    # Only the columns the read uses: an unfiltered read is then answered from the organization
    # totals' covering index alone (migration 0005), never from heap rows and their sketches.
    rolled_columns = ", ".join(
        f"m.{name}"
        for name in (
            "bucket_start",
            "count",
            "sum",
            "min",
            "max",
            *dict.fromkeys([*groups, *(d for d in GROUPABLE if d in filters)]),
            *(["sketch"] if sketches and not definition.is_count else []),
        )
    )
    rolled = (
        f"SELECT true AS rolled, {rolled_keys}, count(*) AS n_rows, sum(m.count) AS n, sum(m.sum) AS s,"
        f" min(m.min) AS lo, max(m.max) AS hi{rolled_sketch}"
        f" FROM rolled_pieces p CROSS JOIN LATERAL (SELECT {rolled_columns} FROM analytics_metrics m"
        " WHERE m.org_id = :org_id AND m.metric = :metric AND m.grain = :grain"
        " AND m.bucket_start >= p.lo AND m.bucket_start < p.hi OFFSET 0) m"
        f" WHERE true{filter_sql('m', filters, params)} GROUP BY {key_list}"
    )
    # Dirty hours move from the covered side to the raw side inside the statement, so the marks,
    # the rollups and the raw events are all read from one snapshot.
    sql = text(
        "WITH cov AS (SELECT coalesce(range_agg(tstzrange(lo, hi)), '{}'::tstzmultirange) AS mr"
        " FROM unnest(CAST(:cov_lo AS timestamptz[]), CAST(:cov_hi AS timestamptz[])) AS u(lo, hi)),"
        " unc AS (SELECT coalesce(range_agg(tstzrange(lo, hi)), '{}'::tstzmultirange) AS mr"
        " FROM unnest(CAST(:unc_lo AS timestamptz[]), CAST(:unc_hi AS timestamptz[])) AS u(lo, hi)),"
        " dirty AS (SELECT coalesce(range_agg(tstzrange(d.lo, d.hi)), '{}'::tstzmultirange) AS mr"
        " FROM analytics_rollup_dirty d WHERE d.org_id = :org_id AND d.event_type = :event_type"
        " AND d.lo < :cov_end AND d.hi > :cov_start),"
        " split AS (SELECT cov.mr - dirty.mr AS rolled, unc.mr + (cov.mr * dirty.mr) AS raw"
        " FROM cov, unc, dirty),"
        " raw_pieces AS (SELECT lower(r) AS lo, upper(r) AS hi FROM split, unnest(split.raw) AS r),"
        " rolled_pieces AS (SELECT lower(r) AS lo, upper(r) AS hi FROM split, unnest(split.rolled) AS r)"
        f" {raw} UNION ALL {rolled}"
    )
    cells: dict[CellKey, _Cell] = {}
    sources: set[bool] = set()
    width = len(groups)
    # Rows are (rolled, g0.., idx, n_rows, n, s, lo, hi[, sketch]); read by position (a year of
    # hours is thousands of rows).
    for row in session.execute(sql, params):
        idx, n_rows, n, total, low, high = row[1 + width : 7 + width]
        if not n_rows:
            continue
        sources.add(row[0])
        key = (tuple(row[1 : 1 + width]), idx - 1 if bounds is not None else None)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = _Cell()
        cell.add(int(n or 0), total, low, high)
        if sketches and row[7 + width]:
            cell.sketches.append(bytes(row[7 + width]))
    if note and sources:
        _note(rollup=True in sources, raw=False in sources)
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
) -> dict[str, Any]:
    """Every bucket's point (count 0, value None when empty) and the summary of `metric` in [start, end)."""
    definition = METRICS[metric]
    if not _options.get().rollups:
        return _raw_time_series(
            session,
            org_id=org_id,
            definition=definition,
            buckets=buckets,
            start=start,
            end=end,
            filters=filters,
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
    )
    cells: dict[int, Any] = {}
    total = _Cell()
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
) -> dict[str, Any]:
    """time_series computed from raw events alone."""
    params: dict[str, Any] = {"bounds": list(buckets.bounds)}
    source = _events_source(definition, org_id, start, end, filters, params)
    sql = text(
        "SELECT GROUPING(idx) AS is_total, idx,"
        f" {_count_sql(definition)} AS n, avg(v) AS avg, min(v) AS min, max(v) AS max"
        " FROM (SELECT width_bucket(e.occurred_at, CAST(:bounds AS timestamptz[])) AS idx,"
        f" {_value_sql(definition)} AS v {source}) s"
        " GROUP BY GROUPING SETS ((idx), ())"
    )
    _note(raw=True)
    cells: dict[int, Any] = {}
    total = None
    for row in session.execute(sql, params):
        if row.is_total:
            total = row
        else:
            cells[row.idx - 1] = row
    return _series(definition, buckets, cells, total)


def _series(definition: Metric, buckets: Buckets, cells: dict[int, Any], total: Any) -> dict[str, Any]:
    """Points for every bucket and the summary, from per-bucket rows (n, avg, min, max) and the total."""
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
    options: ReadOptions | None = None,
) -> dict[CellKey, dict[str, Any]]:
    """Count (and avg, min, max, percentiles) of `metric` per group and bucket with events.

    Percentiles are exact unless `options` (default: the current reading's) allow sketches and the
    measurements outnumber its threshold; then they are within sketch.ALPHA of exact.
    """
    options = options or _options.get()
    definition = METRICS[metric]
    window = {"org_id": org_id, "start": start, "end": end, "filters": filters, "group_by": group_by}
    if not options.rollups:
        return _raw_aggregate(session, definition, buckets=buckets, percentiles=percentiles, **window)
    bounds = buckets.bounds if buckets is not None else None
    wants_percentiles = bool(percentiles) and not definition.is_count
    # With percentiles this first read only counts the measurements, to choose exact or sketches.
    cells = _cells(session, definition, bounds=bounds, note=not wants_percentiles, **window)
    if wants_percentiles:
        measured = sum(cell.count for cell in cells.values())
        if options.approximate_above is None or measured <= options.approximate_above:
            return _raw_aggregate(session, definition, buckets=buckets, percentiles=percentiles, **window)
        cells = _cells(session, definition, bounds=bounds, sketches=True, **window)
        _note(approximate=True)
    out: dict[CellKey, dict[str, Any]] = {}
    fractions = [p / 100 for p in percentiles]
    for key, cell in cells.items():
        if cell.count == 0 and (group_by or buckets is not None):
            continue
        stats: dict[str, Any] = {"count": cell.count}
        if not definition.is_count:
            stats.update(avg=cell.avg, min=cell.min, max=cell.max)
            if wants_percentiles:
                values = sketch.quantiles(cell.sketches, fractions, low=cell.min, high=cell.max)
                stats.update({f"p{p}": v for p, v in zip(percentiles, values, strict=True)})
        out[key] = stats
    return out


def _raw_aggregate(
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
) -> dict[CellKey, dict[str, Any]]:
    """aggregate computed from raw events alone, with exact percentiles."""
    _note(raw=True)
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
    options: ReadOptions | None = None,
) -> dict[str, Any]:
    """Count, avg, min, max (and percentiles) of `metric` over the whole of [start, end)."""
    cells = aggregate(
        session,
        org_id=org_id,
        metric=metric,
        start=start,
        end=end,
        filters=filters,
        percentiles=percentiles,
        options=options,
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
    _note(raw=True)
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
