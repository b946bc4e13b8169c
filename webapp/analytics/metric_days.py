"""Hourly rollups summed per local day of the organization's zone (migration 0025), and which days
of a read may take them.

A day's rows stand for the sum of its hours (rows plus imports' deltas) while no mark overlaps it:
the triggers of migration 0025 leave one, in the writer's transaction, for every dirty hour marked,
every delta appended and every rollup row written or removed. A read takes a day only when it lies
wholly inside one bucket and inside the hours rollups answer (cells.read_cells), so an answer from
days is the answer from hours, row for row.

Days are local midnights of the organization's zone, as the default zone's daily buckets are; a day
whose bounds are not whole UTC hours (Asia/Kolkata's) is never summed, since hours cannot make it.
A read in another zone whose days happen to have the same bounds (Europe/Paris for
Europe/Berlin) takes them as well. `sum_days` (beat, every minute; `bench peer` after its rollups)
sums the ended days that are missing or marked.
"""

from __future__ import annotations

import bisect
import itertools
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics.metrics import ROLLED_METRICS
from webapp.analytics.rollup_sql import DELTA_GRAIN, DELTAS, GRAINS, expanded_deltas_sql, folded_sketch_sql
from webapp.analytics.sql import forget_orphan_marks
from webapp.core.timeutil import local_midnight, zone
from webapp.core.vocabulary import DIMENSIONS

Day = tuple[datetime, datetime]

# Days summed per transaction (one statement).
CHUNK_DAYS = 7
LOCK_CLASS = zlib.crc32(b"analytics_metric_days") & 0x7FFFFFFF
_SHORTEST_DAY = timedelta(hours=23)
_DAY = timedelta(days=1)


def _whole_hours(moment: datetime) -> bool:
    return moment.minute == 0 and moment.second == 0 and moment.microsecond == 0


def local_days(tz: ZoneInfo, start: datetime, end: datetime) -> list[Day]:
    """The local days of `tz` lying wholly in [start, end), as UTC instants, those whose bounds are
    whole UTC hours only."""
    days: list[Day] = []
    day = start.astimezone(tz).date()
    lo = local_midnight(day, tz).astimezone(UTC)
    while lo < end:
        day += _DAY
        hi = local_midnight(day, tz).astimezone(UTC)
        # lo == hi: a date the clock skipped (Pacific/Apia's 2011-12-30), no day at all.
        if start <= lo < hi <= end and _whole_hours(lo) and _whole_hours(hi):
            days.append((lo, hi))
        lo = hi
    return days


def spans(covered: Sequence[Day], edges: Sequence[datetime]) -> list[Day]:
    """The parts of the covered pieces (closed hours rollups answer) between bucket edges that are
    long enough to hold a day (23 hours): a read takes the summed days lying wholly in one of them."""
    inner = sorted(edges[1:-1])
    out: list[Day] = []
    for lo, hi in covered:
        if hi - lo < _SHORTEST_DAY:
            continue
        cuts = [lo, *inner[bisect.bisect_right(inner, lo) : bisect.bisect_left(inner, hi)], hi]
        out.extend((a, b) for a, b in itertools.pairwise(cuts) if b - a >= _SHORTEST_DAY)
    return out


def read_params(covered: Sequence[Day], edges: Sequence[datetime]) -> dict[str, Any] | None:
    """The bound values of a read's day pieces (cells._DAYS), or None when no day can be taken: the
    first and last instants a day may lie in."""
    found = spans(covered, edges)
    if not found:
        return None
    return {"days_lo": found[0][0], "days_hi": found[-1][1]}


# --- summing ahead ----------------------------------------------------------------------------------

_BUILT_LAST = text(
    "SELECT day_start, day_end FROM analytics_metric_day_builds WHERE org_id = :org_id"
    " ORDER BY day_start DESC LIMIT 1"
)
_BUILT = text("SELECT day_start, day_end FROM analytics_metric_day_builds WHERE org_id = :org_id")
# Marks folded into the fewest ranges covering them: every write statement leaves one, and those of a
# day not yet ended (or never summable) wait, so they would pile up. One statement: none is lost.
_COLLAPSE = text(
    "WITH gone AS (DELETE FROM analytics_metric_day_marks WHERE org_id = :org_id RETURNING lo, hi)"
    " INSERT INTO analytics_metric_day_marks (org_id, lo, hi)"
    " SELECT :org_id, lower(r), upper(r) FROM unnest((SELECT range_agg(tstzrange(lo, hi)) FROM gone)) AS r"
    " RETURNING lo, hi"
)
_DIRTY = text("SELECT lo, hi FROM analytics_rollup_dirty WHERE org_id = :org_id")
_ORGS = text(
    "SELECT o.id, o.timezone FROM organizations o"
    " WHERE EXISTS (SELECT 1 FROM analytics_metric_day_marks k WHERE k.org_id = o.id)"
    " OR EXISTS (SELECT 1 FROM analytics_metric_day_builds b WHERE b.org_id = o.id) ORDER BY 1"
)
_METRICS = sorted(ROLLED_METRICS)


def orgs(session: Session) -> list[tuple[int, str]]:
    """Organizations with marks or summed days, with their zones."""
    return [(int(org_id), str(tz)) for org_id, tz in session.execute(_ORGS)]


def _overlaps(day: Day, ranges: Sequence[Day]) -> bool:
    return any(lo < day[1] and hi > day[0] for lo, hi in ranges)


def _days_over(tz: ZoneInfo, ranges: Sequence[Day], closed: datetime) -> list[Day]:
    """The ended local days (before `closed`) that overlap `ranges`, in order, each once."""
    found: dict[datetime, Day] = {}
    for lo, hi in ranges:
        first = local_midnight(lo.astimezone(tz).date(), tz)
        for day in local_days(tz, first, min(hi + 2 * _DAY, closed)):
            if day[0] < hi and day[1] > lo:
                found.setdefault(day[0], day)
    return [found[key] for key in sorted(found)]


def due_days(session: Session, *, org_id: int, tz: ZoneInfo, now: datetime) -> list[Day]:
    """The organization's ended local days with a change since they were summed (or never summed):
    those its marks overlap (every rollup write leaves one), after folding the marks into the fewest
    ranges. If the zone's days are not the ones summed (the zone changed), the days over every summed
    one too."""
    closed = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    marks = [(lo, hi) for lo, hi in session.execute(_COLLAPSE, {"org_id": org_id})]
    last = session.execute(_BUILT_LAST, {"org_id": org_id}).first()
    if last is not None and local_days(tz, last[0], last[1]) != [(last[0], last[1])]:
        marks.extend((lo, hi) for lo, hi in session.execute(_BUILT, {"org_id": org_id}))
    return _days_over(tz, marks, closed)


def sum_days(session: Session, *, org_id: int, tz_name: str, now: datetime) -> int | None:
    """Sum the organization's due days at `now`, CHUNK_DAYS per transaction (the session's own is
    committed first, and each chunk's); the days summed, or None when another transaction is summing
    them.

    Each chunk runs REPEATABLE READ: it sums the hours and deltas its snapshot sees and deletes the
    marks that snapshot sees (keeping their parts outside the chunk's days), so a change committed
    later keeps its mark and its day is read from hours. Days with dirty hours wait for the rollup
    refresh.
    """
    tz = zone(tz_name)
    session.commit()  # each chunk is a transaction of its own, from a snapshot taken at its start
    done = 0
    days: list[Day] | None = None
    i = 0
    while days is None or i < len(days):
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        locked = session.execute(
            text("SELECT pg_try_advisory_xact_lock(:cls, :org)"), {"cls": LOCK_CLASS, "org": org_id}
        ).scalar()
        if not locked:
            session.rollback()
            return None
        if days is None:
            days = due_days(session, org_id=org_id, tz=tz, now=now)
        dirty = [(lo, hi) for lo, hi in session.execute(_DIRTY, {"org_id": org_id})]
        chunk = [day for day in days[i : i + CHUNK_DAYS] if not _overlaps(day, dirty)]
        if chunk:
            _sum_chunk(session, org_id=org_id, days=chunk, now=now)
        session.commit()
        done += len(chunk)
        i += CHUNK_DAYS
    return done


_DIMS = ", ".join(DIMENSIONS)
_SOURCE = (
    "SELECT metric, grain, {dims}, count, sum, min, max, sketch FROM {table} m"
    " WHERE m.org_id = :org_id AND m.metric = ANY(CAST(:metrics AS text[]))"
    " AND m.grain = ANY(CAST(:grains AS smallint[])) AND m.bucket_start >= d.lo AND m.bucket_start < d.hi"
)
# Imports' deltas keep every dimension: summed up to each grain's cells of the day.
_DELTAS_SOURCE = expanded_deltas_sql(
    f"{DELTAS} m WHERE m.org_id = :org_id AND m.metric = ANY(CAST(:metrics AS text[]))"
    f" AND m.grain = {DELTA_GRAIN} AND m.bucket_start >= d.lo AND m.bucket_start < d.hi"
)
_SUM = text(
    f"""
    WITH replaced AS (
        -- Days summed with other bounds (the zone changed) that overlap these; these are upserted.
        DELETE FROM analytics_metric_day_builds b WHERE b.org_id = :org_id
        AND EXISTS (SELECT 1 FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS d(lo, hi)
                    WHERE b.day_start < d.hi AND b.day_end > d.lo)
        AND b.day_start <> ALL(CAST(:lo AS timestamptz[]))
        RETURNING day_start
    ), removed AS (
        DELETE FROM analytics_metric_days r WHERE r.org_id = :org_id
        AND (r.bucket_start IN (SELECT day_start FROM replaced)
             OR r.bucket_start = ANY(CAST(:lo AS timestamptz[])))
    ), gone AS (
        DELETE FROM analytics_metric_day_marks k WHERE k.org_id = :org_id
        AND tstzrange(k.lo, k.hi) && ANY(SELECT tstzrange(lo, hi)
            FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS d(lo, hi))
        RETURNING lo, hi
    ), kept AS (
        INSERT INTO analytics_metric_day_marks (org_id, lo, hi)
        SELECT :org_id, lower(r), upper(r) FROM gone,
        unnest(tstzmultirange(tstzrange(gone.lo, gone.hi)) - (SELECT range_agg(tstzrange(lo, hi))
            FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS d(lo, hi))) AS r
    ), summed AS (
        SELECT d.lo AS bucket_start, s.metric, s.grain, {_DIMS}, sum(s.count) AS count, sum(s.sum) AS sum,
               min(s.min) AS min, max(s.max) AS max, string_agg(s.sketch, ''::bytea) AS sketch
        FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS d(lo, hi)
        CROSS JOIN LATERAL ({_SOURCE.format(dims=_DIMS, table="analytics_metrics")}
                            UNION ALL {_DELTAS_SOURCE}) s
        GROUP BY d.lo, s.metric, s.grain, {_DIMS}
    ), written AS (
        INSERT INTO analytics_metric_days (org_id, metric, grain, bucket_start, {_DIMS},
                                           count, sum, min, max, sketch, updated_at)
        SELECT :org_id, metric, grain, bucket_start, {_DIMS}, count, sum, min, max,
               CASE WHEN sketch IS NULL THEN NULL ELSE {folded_sketch_sql("sketch")} END, :now
        FROM summed WHERE count > 0
    )
    INSERT INTO analytics_metric_day_builds (org_id, day_start, day_end, built_at)
    SELECT :org_id, lo, hi, :now
    FROM unnest(CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS d(lo, hi)
    ON CONFLICT (org_id, day_start) DO UPDATE SET day_end = EXCLUDED.day_end, built_at = EXCLUDED.built_at
    """
)


def _sum_chunk(session: Session, *, org_id: int, days: Sequence[Day], now: datetime) -> None:
    params: dict[str, Any] = {
        "org_id": org_id,
        "lo": [lo for lo, _ in days],
        "hi": [hi for _, hi in days],
        "metrics": _METRICS,
        "grains": list(GRAINS),
        "now": now,
    }
    session.execute(_SUM, params)


def forget_orphans(session: Session) -> int:
    """Delete the marks of organizations that no longer exist (their rows' deletion left them)."""
    return forget_orphan_marks(session, "analytics_metric_day_marks")
