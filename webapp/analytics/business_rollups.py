"""Business-hours rollups: the duration metrics' hourly cells per schedule, counted in open hours.

Per-schedule rollups, not a second value per measurement: a measurement's business value depends on
the schedule, an organization may have up to twenty, and any of them may be asked for. The cells are
those of analytics_metrics (UTC hour, grain, kept dimensions) with the schedule as one more key; a
measurement stays in the hour of its event, only its value is C(end) - C(start) on the schedule.

They follow the calendar rollups exactly, so the calendar's dirty marks say for both which hours are
stale: every calendar build of a range rebuilds the same range here for the schedules whose rollups
are current (rollups.build), and an import's merge rebuilds the hours its events touched
(rollups.merge_new_events), in the same transaction and under the same organization lock.

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
from webapp.analytics.clock import business_hours_sql
from webapp.analytics.metrics import METRICS, Metric
from webapp.analytics.rollup_sql import _grain_sql, _grouping_sets, _kept_dimensions_sql
from webapp.core.vocabulary import DIMENSIONS

DURATION_METRICS = tuple(m for m in METRICS.values() if m.duration)
EVENT_TYPES = tuple(dict.fromkeys(m.event_type for m in DURATION_METRICS))
CHUNK = timedelta(days=7)
# Staged hours closer than this are rebuilt as one range.
MERGE_GAP = timedelta(hours=24)

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


def _metrics(event_types: Iterable[str]) -> list[Metric]:
    types = set(event_types)
    return [m for m in DURATION_METRICS if m.event_type in types]


def _build_sql(metrics: Sequence[Metric]) -> str:
    """One statement inserting the cells of [:start, :end) for the schedules :schedules."""
    dims = ", ".join(DIMENSIONS)
    branches = []
    value = business_hours_sql("e.occurred_at - e.value * interval '1 hour'", "e.occurred_at", "sch.id")
    for i in range(len(metrics)):
        branches.append(
            f"SELECT sch.id AS schedule_id, CAST(:metric_{i} AS text) AS metric,"
            f" date_trunc('hour', e.occurred_at, 'UTC') AS h, {', '.join(f'e.{d}' for d in DIMENSIONS)},"
            f" {value} AS v FROM ticket_events e CROSS JOIN unnest(CAST(:schedules AS bigint[])) AS sch(id)"
            f" WHERE e.org_id = :org_id AND e.event_type = :event_type_{i} AND e.value IS NOT NULL"
            " AND e.occurred_at >= :start AND e.occurred_at < :end"
        )
    # OFFSET 0: each value is computed once (two index lookups), not again inside the sketch key.
    measured = f"SELECT *, {sketch.sql_key('v')} AS k FROM ({' UNION ALL '.join(branches)} OFFSET 0) x"
    return (
        f"WITH ev AS ({measured}),"
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
        " FROM fresh WHERE count > 0"
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
        written += session.execute(sql, window).rowcount or 0
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
    session.execute(
        text("DELETE FROM analytics_business_metrics WHERE schedule_id = :id"), {"id": schedule_id}
    )
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


def merge_new_events(session: Session, *, org_id: int, events: str) -> int:
    """Rebuild, for the current schedules, the hours the staged new events of `events` (a staging
    table of the caller's, never input) touched. The caller holds the rollup lock."""
    schedules = current_schedules(session, org_id)
    if not schedules:
        return 0
    hours = list(
        session.scalars(
            text(
                f"SELECT DISTINCT date_trunc('hour', occurred_at, 'UTC') AS h FROM {events}"
                " WHERE org_id = :org_id AND event_type = ANY(CAST(:types AS text[])) ORDER BY h"
            ),
            {"org_id": org_id, "types": list(EVENT_TYPES)},
        )
    )
    ranges: list[list[datetime]] = []
    for hour in hours:
        if ranges and hour <= ranges[-1][1] + MERGE_GAP:
            ranges[-1][1] = hour + timedelta(hours=1)
        else:
            ranges.append([hour, hour + timedelta(hours=1)])
    return sum(build(session, org_id=org_id, start=lo, end=hi, schedule_ids=schedules) for lo, hi in ranges)
