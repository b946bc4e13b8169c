"""Business-hours rollups: the duration metrics' hourly cells per schedule, counted in open hours.

Per-schedule rollups, not a second value per measurement: a measurement's business value depends on
the schedule, an organization may have up to twenty, and any of them may be asked for. The cells are
those of analytics_metrics (UTC hour, grain, kept dimensions) with the schedule as one more key; a
measurement stays in the hour of its event, only its value is C(end) - C(start) on the schedule.

They follow the calendar rollups exactly, so the calendar's dirty marks say for both which hours are
stale: every calendar build of a range rebuilds the same range here for the schedules whose rollups
are current (rollups.build), and an import adds its new events to them as it adds them to the
calendar's (rollups.merge_new_events), in the same transaction and under the same organization lock.

A schedule's rollups are current while analytics_business_rollups holds its present version. A change
of its hours bumps the version, so reads fall back to raw events at once (cells.py checks the version
inside the read's statement) until a full rebuild (rollups.build_business, beat's sweep) catches up.
Nothing here takes the lock: the callers in rollups.py do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sketch
from webapp.analytics.clock import Clock, bind, value_sql
from webapp.analytics.metrics import METRICS, Metric
from webapp.analytics.rollup_sql import (
    FOLD_SKETCH_BYTES,
    _grain_sql,
    _grouping_sets,
    _kept_dimensions_sql,
    folded_sketch_sql,
)
from webapp.core.vocabulary import DIMENSIONS

DURATION_METRICS = tuple(m for m in METRICS.values() if m.clocked)
EVENT_TYPES = tuple(dict.fromkeys(m.event_type for m in DURATION_METRICS))
CHUNK = timedelta(days=7)
# Any business clock: the statement's SQL is the same for every schedule (bound as :schedule_id).
PROBE = Clock(0)

_CURRENT = (
    "SELECT s.id FROM schedules s JOIN analytics_business_rollups b"
    " ON b.schedule_id = s.id AND b.version = s.version WHERE s.org_id = :org_id ORDER BY s.id"
)


def current_schedules(session: Session, org_id: int) -> list[int]:
    """The organization's schedules whose business rollups are built for their present version."""
    return list(session.scalars(text(_CURRENT), {"org_id": org_id}))


def stale_schedules(session: Session) -> list[tuple[int, int]]:
    """(org_id, schedule_id) of every schedule whose business rollups are missing or out of date."""
    rows = session.execute(
        text(
            "SELECT s.org_id, s.id FROM schedules s LEFT JOIN analytics_business_rollups b"
            " ON b.schedule_id = s.id WHERE b.version IS DISTINCT FROM s.version ORDER BY s.org_id, s.id"
        )
    )
    return [(int(row.org_id), int(row.id)) for row in rows]


# Each measurement's value too (analytics_business_values), from the same computed rows: a
# data-modifying WITH runs to completion whether or not the statement reads it.
_VALUES = (
    f" vals AS (INSERT INTO analytics_business_values (org_id, schedule_id, metric, occurred_at, value,"
    f" {', '.join(DIMENSIONS)}) SELECT :org_id, schedule_id, metric, at, v, {', '.join(DIMENSIONS)}"
    " FROM ev WHERE v IS NOT NULL),"
)


def _metrics(event_types: Iterable[str]) -> list[Metric]:
    types = set(event_types)
    return [m for m in DURATION_METRICS if m.event_type in types]


def _build_sql(metrics: Sequence[Metric]) -> str:
    """One statement inserting the cells of [:start, :end) for the schedule :schedule_id (bound)."""
    dims = ", ".join(DIMENSIONS)
    branches = []
    for i, metric in enumerate(metrics):
        branches.append(
            f"SELECT CAST(:schedule_id AS bigint) AS schedule_id, CAST(:metric_{i} AS text) AS metric,"
            f" e.occurred_at AS at, date_trunc('hour', e.occurred_at, 'UTC') AS h,"
            f" {', '.join(f'e.{d}' for d in DIMENSIONS)}, {value_sql(metric, PROBE)} AS v"
            " FROM ticket_events e"
            f" WHERE e.org_id = :org_id AND e.event_type = :event_type_{i} AND e.value IS NOT NULL"
            " AND e.occurred_at >= :start AND e.occurred_at < :end"
        )
    # OFFSET 0: each value is computed once (two index lookups), not again inside the sketch key.
    measured = f"SELECT *, {sketch.sql_key('v')} AS k FROM ({' UNION ALL '.join(branches)} OFFSET 0) x"
    return (
        f"WITH ev AS ({measured}),{_VALUES}"
        f" cells AS (SELECT schedule_id, metric, h, {_grain_sql()} AS grain, {dims}, k,"
        " count(v) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi"
        f" FROM ev GROUP BY schedule_id, metric, h, k, GROUPING SETS ({_grouping_sets()})),"
        f" fresh AS (SELECT schedule_id, metric, grain, h AS bucket_start, {_kept_dimensions_sql()},"
        " sum(n) AS count, sum(s) AS sum, min(lo) AS min, max(hi) AS max,"
        " string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea)"
        " FILTER (WHERE n > 0) AS sketch"
        f" FROM cells GROUP BY schedule_id, metric, grain, h, {dims})"
        f" INSERT INTO analytics_business_metrics (org_id, schedule_id, metric, grain, bucket_start, {dims},"
        " count, sum, min, max, sketch)"
        f" SELECT :org_id, schedule_id, metric, grain, bucket_start, {dims}, count, sum, min, max, sketch"
        # Written in key order: a week's totals (grain 0) share a few heap pages, as the calendar's
        # do in their own partition, so reading their sketches touches few pages.
        f" FROM fresh WHERE count > 0 ORDER BY metric, grain, bucket_start, {dims}"
    )


def build(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    event_types: Iterable[str] = EVENT_TYPES,
    schedule_ids: Sequence[int] | None = None,
) -> int:
    """Rebuild the business rollups of [start, end) (whole UTC hours) for `schedule_ids` (default: the
    organization's current ones) from raw events; the rows it wrote. The caller holds the rollup lock."""
    metrics = _metrics(event_types)
    schedules = list(current_schedules(session, org_id) if schedule_ids is None else schedule_ids)
    if not metrics or not schedules:
        return 0
    params: dict[str, object] = {
        "org_id": org_id,
        "schedules": schedules,
        "metrics": [m.name for m in metrics],
        **{f"metric_{i}": m.name for i, m in enumerate(metrics)},
        **{f"event_type_{i}": m.event_type for i, m in enumerate(metrics)},
    }
    hours = session.execute(
        text(
            "SELECT date_trunc('hour', CAST(:start AS timestamptz), 'UTC') AS lo,"
            " date_trunc('hour', CAST(:end AS timestamptz) - interval '1 microsecond', 'UTC')"
            " + interval '1 hour' AS hi"
        ),
        {"start": start, "end": end},
    ).one()
    sql = text(_build_sql(metrics))
    written = 0
    lo = hours.lo
    while lo < hours.hi:
        hi = min(lo + CHUNK, hours.hi)
        window = {**params, "start": lo, "end": hi}
        session.execute(
            text(
                "DELETE FROM analytics_business_metrics WHERE org_id = :org_id"
                " AND schedule_id = ANY(CAST(:schedules AS bigint[]))"
                " AND metric = ANY(CAST(:metrics AS text[]))"
                " AND bucket_start >= :start AND bucket_start < :end"
            ),
            window,
        )
        session.execute(
            text(
                "DELETE FROM analytics_business_values WHERE org_id = :org_id"
                " AND schedule_id = ANY(CAST(:schedules AS bigint[]))"
                " AND metric = ANY(CAST(:metrics AS text[]))"
                " AND occurred_at >= :start AND occurred_at < :end"
            ),
            window,
        )
        for schedule_id in schedules:
            statement = {**window}
            bind(session, Clock(schedule_id), statement, start=lo, end=hi)
            written += session.execute(sql, statement).rowcount or 0
        lo = hi
    return written


def rebuild_schedule(session: Session, *, org_id: int, schedule_id: int, end: datetime) -> int | None:
    """Build every hour of the schedule's business rollups before `end` afresh, and mark them current
    for the version read first; None if the schedule is gone. The caller holds the rollup lock."""
    version = session.scalar(
        text("SELECT version FROM schedules WHERE id = :id AND org_id = :org_id"),
        {"id": schedule_id, "org_id": org_id},
    )
    if version is None:
        return None
    for table in ("analytics_business_metrics", "analytics_business_values"):
        session.execute(text(f"DELETE FROM {table} WHERE schedule_id = :id"), {"id": schedule_id})
    first = session.scalar(
        text(
            "SELECT min(occurred_at) FROM ticket_events WHERE org_id = :org_id"
            " AND event_type = ANY(CAST(:types AS text[]))"
        ),
        {"org_id": org_id, "types": list(EVENT_TYPES)},
    )
    written = 0
    if first is not None and first < end:
        written = build(session, org_id=org_id, start=first, end=end, schedule_ids=[schedule_id])
    # A version read before a change that commits meanwhile stays behind it: reads ignore these rows
    # and the next sweep builds again.
    session.execute(
        text(
            "INSERT INTO analytics_business_rollups (schedule_id, org_id, version, built_at)"
            " VALUES (:id, :org_id, :version, now()) ON CONFLICT (schedule_id) DO UPDATE"
            " SET version = EXCLUDED.version, built_at = EXCLUDED.built_at"
        ),
        {"id": schedule_id, "org_id": org_id, "version": version},
    )
    return written


def _merge_sql(metrics: Sequence[Metric], events: str) -> str:
    """One statement adding the cells of the staged events in `events` to the bound schedule's rows."""
    dims = ", ".join(DIMENSIONS)
    branches = [
        f"SELECT CAST(:schedule_id AS bigint) AS schedule_id, CAST(:metric_{i} AS text) AS metric,"
        f" e.occurred_at AS at, date_trunc('hour', e.occurred_at, 'UTC') AS h,"
        f" {', '.join(f'e.{d}' for d in DIMENSIONS)}, {value_sql(metric, PROBE)} AS v FROM {events} e"
        f" WHERE e.org_id = :org_id AND e.event_type = :event_type_{i} AND e.value IS NOT NULL"
        for i, metric in enumerate(metrics)
    ]
    fold = int(FOLD_SKETCH_BYTES)
    both = "m.sketch || EXCLUDED.sketch"
    return (
        f"WITH ev AS (SELECT *, {sketch.sql_key('v')} AS k FROM ({' UNION ALL '.join(branches)} OFFSET 0) x),"
        f"{_VALUES} delta AS (SELECT schedule_id, metric, {_grain_sql()} AS grain, h AS bucket_start,"
        f" {_kept_dimensions_sql()}, count(v) AS count, sum(v) AS sum, min(v) AS min, max(v) AS max,"
        " string_agg(int2send(CAST(k AS int2)) || int4send(1), ''::bytea) FILTER (WHERE v IS NOT NULL)"
        f" AS sketch FROM ev GROUP BY schedule_id, metric, h, GROUPING SETS ({_grouping_sets()}))"
        f" INSERT INTO analytics_business_metrics AS m (org_id, schedule_id, metric, grain, bucket_start,"
        f" {dims}, count, sum, min, max, sketch)"
        f" SELECT :org_id, schedule_id, metric, grain, bucket_start, {dims}, count, sum, min, max,"
        f" CASE WHEN length(sketch) > {fold} THEN {folded_sketch_sql('sketch')} ELSE sketch END"
        " FROM delta WHERE count > 0"
        f" ON CONFLICT (org_id, schedule_id, metric, grain, bucket_start, {dims}) DO UPDATE SET"
        " count = m.count + EXCLUDED.count, sum = m.sum + EXCLUDED.sum,"
        " min = least(m.min, EXCLUDED.min), max = greatest(m.max, EXCLUDED.max),"
        " sketch = CASE WHEN m.sketch IS NULL THEN EXCLUDED.sketch WHEN EXCLUDED.sketch IS NULL THEN m.sketch"
        f" WHEN length(m.sketch) + length(EXCLUDED.sketch) <= {fold} THEN {both}"
        f" ELSE {folded_sketch_sql(both)} END"
    )


def merge_new_events(session: Session, *, org_id: int, events: str) -> int:
    """Add the staged new events of `events` (a staging table of the caller's, never input) to the
    current schedules' rows, as rollups.merge_new_events adds them to the calendar's: counts and sums
    added, min and max widened, sketches merged. The caller holds the rollup lock."""
    schedules = current_schedules(session, org_id)
    metrics = list(DURATION_METRICS)
    if not schedules or not metrics:
        return 0
    span = session.execute(
        text(f"SELECT min(occurred_at) AS lo, max(occurred_at) AS hi FROM {events} WHERE org_id = :org_id"),
        {"org_id": org_id},
    ).one()
    if span.lo is None:
        return 0
    params: dict[str, object] = {
        "org_id": org_id,
        **{f"metric_{i}": m.name for i, m in enumerate(metrics)},
        **{f"event_type_{i}": m.event_type for i, m in enumerate(metrics)},
    }
    sql = text(_merge_sql(metrics, events))
    written = 0
    for schedule_id in schedules:
        statement = dict(params)
        bind(session, Clock(schedule_id), statement, start=span.lo, end=span.hi + timedelta(microseconds=1))
        written += session.execute(sql, statement).rowcount or 0
    return written
