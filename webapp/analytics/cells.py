"""Count, sum, min, max (and sketches) of one metric per group and bucket: rollups plus raw events.

One statement reads both sides. Its pieces CTE splits the range into the hours rollups may answer
(coverage.split_range) and the rest; the raw part reads the rest from ticket_events, the rolled part
reads analytics_metrics; each keys its rows by group (g0, g1, ...) and bucket index (idx), and the
two are combined per key here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from webapp.analytics import metric_days, sketch
from webapp.analytics.clock import CALENDAR, Clock, bind
from webapp.analytics.clock import value_sql as clock_value_sql
from webapp.analytics.coverage import split_range
from webapp.analytics.metrics import GROUPABLE, Metric
from webapp.analytics.planner import grain_for
from webapp.analytics.rollup_sql import DELTA_GRAIN, DELTAS, DIMENSION_BITS
from webapp.analytics.sql import (
    binary_rows,
    bound_list,
    bucket_index,
    column,
    count_sql,
    filter_sql,
    instants,
    ticket_join,
)
from webapp.core.filters import Filters
from webapp.core.timeutil import epoch_micros, utcnow

HOUR = timedelta(hours=1)

# One aggregated cell: its group values (in group_by order) and its 0-based bucket index or None.
CellKey = tuple[tuple[str | None, ...], int | None]

# Dirty hours move from the covered side to the raw side inside the statement, so the marks,
# the rollups and the raw events are all read from one snapshot. On a business clock the whole
# covered side is dirty unless the schedule's rollups are built for its present version.
_PIECES = (
    "WITH cov AS (SELECT coalesce(range_agg(tstzrange(lo, hi)), '{}'::tstzmultirange) AS mr"
    " FROM unnest(CAST(:cov_lo AS timestamptz[]), CAST(:cov_hi AS timestamptz[])) AS u(lo, hi)),"
    " unc AS (SELECT coalesce(range_agg(tstzrange(lo, hi)), '{}'::tstzmultirange) AS mr"
    " FROM unnest(CAST(:unc_lo AS timestamptz[]), CAST(:unc_hi AS timestamptz[])) AS u(lo, hi)),"
    " dirty AS (SELECT coalesce(range_agg(tstzrange(d.lo, d.hi)), '{}'::tstzmultirange) AS mr"
    " FROM (SELECT d.lo, d.hi FROM analytics_rollup_dirty d WHERE d.org_id = :org_id"
    " AND d.event_type = :event_type AND d.lo < :cov_end AND d.hi > :cov_start{unbuilt}) d),"
    " split AS (SELECT cov.mr - dirty.mr AS rolled, unc.mr + (cov.mr * dirty.mr) AS raw"
    " FROM cov, unc, dirty),"
    " raw_pieces AS (SELECT lower(r) AS lo, upper(r) AS hi FROM split, unnest(split.raw) AS r),"
    "{days}"
    " rolled_pieces AS (SELECT lower(r) AS lo, upper(r) AS hi"
    " FROM split, unnest(split.rolled{less_days}) AS r)"
)
# Summed days (metric_days) between :days_lo and :days_hi, wholly in the rolled hours (so no dirty
# hour) and in one bucket (their first and last instants' buckets are one), with no mark since they
# were summed, are read from their day rows instead of their hours: contiguous ones as one range.
_DAY_LAST = "b.day_end - interval '1 microsecond'"
_DAYS = (
    " day_list AS (SELECT b.day_start AS lo, b.day_end AS hi"
    " FROM analytics_metric_day_builds b CROSS JOIN split"
    " WHERE b.org_id = :org_id AND b.day_start >= :days_lo AND b.day_start < :days_hi"
    " AND split.rolled @> tstzrange(b.day_start, b.day_end)"
    f" AND {bucket_index('b.day_start')} = {bucket_index(_DAY_LAST)}"
    " AND NOT EXISTS (SELECT 1 FROM analytics_metric_day_marks k WHERE k.org_id = :org_id"
    " AND k.lo < b.day_end AND k.hi > b.day_start)),"
    " days AS (SELECT coalesce(range_agg(tstzrange(lo, hi)), '{}'::tstzmultirange) AS mr FROM day_list),"
    " day_pieces AS (SELECT lower(r) AS lo, upper(r) AS hi FROM days, unnest(days.mr) AS r),"
)
_LESS_DAYS = " - (SELECT mr FROM days)"
# A sketch of raw values: one (key, count) pair per distinct key, as the rollups store theirs.
_RAW_SKETCH = (
    "string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea)"
    " FILTER (WHERE n > 0) AS sketch"
)
_NO_SKETCH = ", CAST(NULL AS bytea) AS sketch"
_UNBUILT = (
    " UNION ALL SELECT CAST(:cov_start AS timestamptz), CAST(:cov_end AS timestamptz)"
    " WHERE CAST(:cov_start AS timestamptz) < :cov_end AND NOT EXISTS (SELECT 1 FROM schedules s"
    " JOIN analytics_business_rollups b ON b.schedule_id = s.id AND b.version = s.version"
    " WHERE s.id = :schedule_id AND s.org_id = :org_id)"
)


def pieces_sql(*, business: bool, days: bool = False) -> str:
    """The pieces CTE: raw_pieces and rolled_pieces (and day_pieces with `days`)."""
    return (
        _PIECES.replace("{unbuilt}", _UNBUILT if business else "")
        .replace("{days}", _DAYS if days else "")
        .replace("{less_days}", _LESS_DAYS if days else "")
    )


@dataclass
class Cell:
    """count, sum, min, max (and sketches) of one group and bucket, gathered from raw and rollup parts."""

    count: int = 0
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    sketches: list[bytes] = field(default_factory=list)

    def add(self, count: int, total: float | None, low: float | None, high: float | None) -> None:
        """Fold in one part's count, sum, min and max."""
        self.count += count
        if total is not None:
            self.sum = total if self.sum is None else self.sum + total
        if low is not None:
            self.min = low if self.min is None else min(self.min, low)
        if high is not None:
            self.max = high if self.max is None else max(self.max, high)

    @property
    def avg(self) -> float | None:
        """The mean of the measurements (None without any)."""
        return self.sum / self.count if self.count and self.sum is not None else None


@dataclass(frozen=True)
class _Shape:
    """What the statement selects: the metric, its group columns, and whether sketches come too."""

    metric: Metric
    groups: tuple[str, ...]
    sketches: bool
    clock: Clock = CALENDAR

    @property
    def key_list(self) -> str:
        return ", ".join([*(f"g{i}" for i in range(len(self.groups))), "idx"])

    def key_columns(self, alias: str, moment: str) -> str:
        """The group columns of `alias` as g0, g1, ... and the bucket of its `moment` column as idx."""
        named = [f"{alias}.{name} AS g{i}" for i, name in enumerate(self.groups)]
        return ", ".join([*named, f"{bucket_index(f'{alias}.{moment}')} AS idx"])

    @property
    def measured_sketches(self) -> bool:
        """Sketches of values exist only for measured metrics (a count has none)."""
        return self.sketches and not self.metric.is_count


def _raw_events(shape: _Shape, filters: Filters, params: dict[str, Any]) -> str:
    """FROM the events of the raw pieces, filtered."""
    # LATERAL ... OFFSET 0 keeps each piece its own index range scan, whatever the statistics say.
    return (
        "FROM raw_pieces p CROSS JOIN LATERAL (SELECT e.* FROM ticket_events e"
        " WHERE e.org_id = :org_id AND e.event_type = :event_type"
        " AND e.occurred_at >= p.lo AND e.occurred_at < p.hi OFFSET 0) e"
        f"{ticket_join(shape.metric)} WHERE true{filter_sql('e', filters, params)}"
    )


def _raw_part(shape: _Shape, filters: Filters, params: dict[str, Any]) -> str:
    """The raw side: one row per key with n_rows, n, s, lo, hi (and a sketch when asked)."""
    keys, events = shape.key_list, _raw_events(shape, filters, params)
    value = clock_value_sql(shape.metric, shape.clock)
    count = count_sql(shape.metric)
    if shape.measured_sketches:
        # Raw values join the rollups' sketches: one (key, count) pair per distinct key of the cell.
        # OFFSET 0 computes each value once (a business value is two index lookups), then its key.
        return (
            f"SELECT false AS rolled, {keys}, sum(n_rows) AS n_rows, sum(n) AS n, sum(s) AS s,"
            f" min(lo) AS lo, max(hi) AS hi, {_RAW_SKETCH}"
            f" FROM (SELECT {keys}, k, count(*) AS n_rows, {count} AS n, sum(v) AS s,"
            " min(v) AS lo, max(v) AS hi"
            f" FROM (SELECT *, {sketch.sql_key('v')} AS k FROM (SELECT"
            f" {shape.key_columns('e', 'occurred_at')}, {value} AS v {events} OFFSET 0) r0) r"
            f" GROUP BY {keys}, k) x GROUP BY {keys}"
        )
    return (
        f"SELECT false AS rolled, {keys}, count(*) AS n_rows, {count} AS n, sum(v) AS s,"
        " min(v) AS lo, max(v) AS hi"
        + (_NO_SKETCH if shape.sketches else "")
        + f" FROM (SELECT {shape.key_columns('e', 'occurred_at')}, {value} AS v {events}) r GROUP BY {keys}"
    )


def _rolled_columns(shape: _Shape, filters: Filters) -> str:
    """The rollup columns the read uses, and no others."""
    # Only the columns the read uses: an unfiltered read is then answered from the organization
    # totals' covering index alone (migration 0005), never from heap rows and their sketches.
    dimensions = dict.fromkeys([*shape.groups, *(d for d in GROUPABLE if d in filters)])
    names = ("bucket_start", "count", "sum", "min", "max", *dimensions)
    return ", ".join(f"m.{name}" for name in (*names, *(["sketch"] if shape.measured_sketches else [])))


def _rolled_part(
    shape: _Shape, filters: Filters, params: dict[str, Any], *, days: bool = False, grouped: bool = True
) -> str:
    """The rollup side, in the raw side's columns; with `days`, summed days answer the day_pieces.

    Not `grouped`, each rollup row comes as it is, one row a key or more: the caller adds rows of
    one key together either way. For reads whose every rollup row is a cell of its own (one hour a
    bucket, the grain's dimensions those grouped by), grouping them in SQL is only cost: a hash
    aggregate of 12,440 rows for a 90-day hourly read by channel.
    """
    if shape.measured_sketches:
        sketches = ", string_agg(m.sketch, ''::bytea) AS sketch"
    else:
        sketches = _NO_SKETCH if shape.sketches else ""
    if shape.clock.business:
        # The grain as a literal (an int of grain_for), so the totals' partial index (migration
        # 0012) is provably usable whatever plan the statement gets.
        grain = f"{int(params['grain'])}" if params["grain"] is not None else ":grain"
        tables = [
            (
                "analytics_business_metrics m WHERE m.org_id = :org_id AND m.schedule_id = :schedule_id AND",
                grain,
            )
        ]
    else:
        grain = ":grain"
        # Cells imports appended and no fold has moved into the rows yet, kept at every dimension:
        # each is added like another row of the cell its dimensions fall in.
        tables = [
            ("analytics_metrics m WHERE m.org_id = :org_id AND", grain),
            (f"{DELTAS} m WHERE m.org_id = :org_id AND", str(DELTA_GRAIN)),
        ]
    # The filters inside the subquery: the cube's index has its dimensions before bucket_start.
    rest = f" AND m.bucket_start >= p.lo AND m.bucket_start < p.hi{filter_sql('m', filters, params)}"
    where = f" m.metric = :metric AND m.grain = {grain}{rest}"
    columns = _rolled_columns(shape, filters)
    selects = " UNION ALL ".join(
        f"SELECT {columns} FROM {table} m.metric = :metric AND m.grain = {table_grain}{rest}"
        for table, table_grain in tables
    )
    rows = f"SELECT m.* FROM rolled_pieces p CROSS JOIN LATERAL ({selects} OFFSET 0) m"
    if days:
        rows += (
            f" UNION ALL SELECT m.* FROM day_pieces p CROSS JOIN LATERAL (SELECT {columns}"
            f" FROM analytics_metric_days m WHERE m.org_id = :org_id AND{where} OFFSET 0) m"
        )
    if not grouped:
        sketch = ", m.sketch" if shape.measured_sketches else sketches
        return (
            f"SELECT true AS rolled, {shape.key_columns('m', 'bucket_start')}, 1 AS n_rows, m.count AS n,"
            f" m.sum AS s, m.min AS lo, m.max AS hi{sketch} FROM ({rows}) m"
        )
    return (
        # The count summed as bigint, not numeric: read as an int (a Decimal costs a conversion a cell).
        f"SELECT true AS rolled, {shape.key_columns('m', 'bucket_start')}, count(*) AS n_rows,"
        f" CAST(sum(m.count) AS bigint) AS n, sum(m.sum) AS s, min(m.min) AS lo, max(m.max) AS hi{sketches}"
        f" FROM ({rows}) m GROUP BY {shape.key_list}"
    )


def _piece_params(
    metric: Metric,
    *,
    org_id: int,
    edges: list[datetime],
    grain: int | None,
    start: datetime,
    end: datetime,
) -> tuple[dict[str, Any], list[tuple[datetime, datetime]]]:
    """The statement's parameters (the bounds, and the covered and uncovered pieces of the range),
    and the covered pieces themselves."""
    if grain is None:
        covered, uncovered = [], [(start, end)]
    else:
        covered, uncovered = split_range(edges, start, end, utcnow())
    return {
        "org_id": org_id,
        "event_type": metric.event_type,
        "metric": metric.name,
        "grain": grain,
        "bounds": bound_list(edges),
        "cov_lo": instants([lo for lo, _ in covered]),
        "cov_hi": instants([hi for _, hi in covered]),
        "unc_lo": instants([lo for lo, _ in uncovered]),
        "unc_hi": instants([hi for _, hi in uncovered]),
        "cov_start": covered[0][0] if covered else start,
        "cov_end": covered[-1][1] if covered else start,
    }, covered


def _cell_per_row(edges: Sequence[datetime], grain: int | None, group_by: Sequence[str]) -> bool:
    """Whether every rollup row of a read is a cell of its own: each bucket one whole UTC hour, and
    the grain keeping exactly the dimensions grouped by (filters on others take a wider grain)."""
    if grain is None or grain != sum(DIMENSION_BITS[name] for name in set(group_by)) or len(edges) < 2:
        return False
    return epoch_micros(edges[0]) % 3_600_000_000 == 0 and all(
        later - earlier == HOUR for earlier, later in itertools.pairwise(edges)
    )


def _read_rows(
    session: Session,
    metric: Metric,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str],
    bounds: Sequence[datetime] | None,
    sketches: bool,
    clock: Clock = CALENDAR,
) -> list[Any]:
    """The statement's rows: (rolled, g0.., idx, n_rows, n, s, lo, hi[, sketch]); the raw side has one
    row a key, the rollup side one a key or, when each of its rows is a cell (_cell_per_row), a row
    a rollup row. The callers add rows of one key together."""
    edges = list(bounds) if bounds is not None else [start, end]
    grain = grain_for([*filters, *group_by])
    clock = clock.for_metric(metric)
    params, covered = _piece_params(metric, org_id=org_id, edges=edges, grain=grain, start=start, end=end)
    shape = _Shape(metric, tuple(column(name, GROUPABLE) for name in group_by), sketches, clock)
    # Summed days answer the calendar clock's hours only (business hours have rollups of their own).
    days = None if clock.business else metric_days.read_params(covered, edges)
    if days is not None:
        params.update(days)
    raw, rolled = (
        _raw_part(shape, filters, params),
        _rolled_part(
            shape, filters, params, days=days is not None, grouped=not _cell_per_row(edges, grain, group_by)
        ),
    )
    pieces = pieces_sql(business=clock.business, days=days is not None)
    if clock.business:
        bind(session, clock, params, start=start, end=end)
    return binary_rows(session, f"{pieces} {raw} UNION ALL {rolled}", params, named=False)


def read_cells(
    session: Session,
    metric: Metric,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    group_by: Sequence[str],
    bounds: Sequence[datetime] | None,
    sketches: bool = False,
    clock: Clock = CALENDAR,
) -> tuple[dict[CellKey, Cell], set[bool]]:
    """Per group and bucket the cells from rollups plus the raw remainder, and which sides answered
    (True: rollups, False: raw events). With `bounds` None the whole range is one cell of index None.
    A duration metric is counted on `clock`."""
    rows = _read_rows(
        session, metric, org_id=org_id, start=start, end=end, filters=filters, group_by=group_by,
        bounds=bounds, sketches=sketches, clock=clock,
    )  # fmt: skip
    sources: set[bool] = {bool(row[0]) for row in rows}
    width = len(group_by)
    # Rows are read by position. A key mostly comes once: twice where the raw edges of a bucket meet
    # its rolled hours, or where an import's unfolded delta meets its rollup row. A cell is made in
    # one step and only those few are added to (combining the sides in SQL instead cost a sort).
    idx, n = 1 + width, 3 + width
    cells: dict[CellKey, Cell] = {}
    for row in rows:
        key = (tuple(row[1:idx]), row[idx] - 1 if bounds is not None else None)
        blob = row[n + 4] if sketches else None
        cell = cells.get(key)
        if cell is None:
            cells[key] = Cell(
                int(row[n] or 0), row[n + 1], row[n + 2], row[n + 3], [bytes(blob)] if blob else []
            )
        else:
            cell.add(int(row[n] or 0), row[n + 1], row[n + 2], row[n + 3])
            if blob:
                cell.sketches.append(bytes(blob))
    return cells, sources


def read_counts(
    session: Session, metric: Metric, *, bounds: Sequence[datetime] | None, **read: Any
) -> tuple[dict[CellKey, int], set[bool]]:
    """read_cells' counts alone, with read_cells' arguments but sketches (for a count metric, whose
    cells hold nothing else): an int a key instead of a Cell, a third of the Python time of a 90-day
    hourly count by channel."""
    rows = _read_rows(session, metric, bounds=bounds, sketches=False, **read)
    group_by = read["group_by"]
    sources: set[bool] = {row[0] for row in rows}
    idx, n = 1 + len(group_by), 3 + len(group_by)
    counts: dict[CellKey, int] = {}
    get = counts.get
    # Both sides' counts are bigint (never NULL): ints as they come.
    if bounds is None:
        for row in rows:
            key = (row[1:idx], None)
            counts[key] = get(key, 0) + row[n]
    else:
        for row in rows:
            key = (row[1:idx], row[idx] - 1)
            counts[key] = get(key, 0) + row[n]
    return counts, sources
