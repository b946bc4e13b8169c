"""Hourly rollups in analytics_metrics, kept exact by the dirty hours the raw tables mark.

Every write of ticket_events, and every sentiment change of a ticket, marks the UTC hours it
touched in analytics_rollup_dirty, inside the writer's transaction (the triggers of migration
0002_rollups). Reads trust a rollup hour only while no mark covers it, so answers are exact whoever
wrote the events: the API, a COPY seed, SQL by hand. A refresh rebuilds marked hours from raw events
and deletes the marks it saw, in the same statement, so a mark committed while it ran survives.

Bulk writes (imports) only insert tickets with their events, so they keep the rollups current
themselves: in the transaction that inserts the events they append one row per cell of those events
(count, sum, minimum, maximum, sketch) to analytics_metric_deltas (merge_new_events), each cell
keeping all five dimensions (rollup_sql.DELTA_GRAIN), and the insert trigger marks nothing for them
(the setting of migration 0004). Readers add the deltas falling in a cell to its row as they add the
hours of a bucket, so answers are exact at the import's commit; fold_deltas (beat's refresh) sums
them up to every grain and moves them into the rows, and a build of a range drops the range's
deltas with the rows it replaces, in the same statement. Appending costs a tenth of updating rows in
place, and one grain's cells (about 85,000 for 10,000 tickets) a third of every grain's (215,000).
A refresh would instead rebuild every hour they touched from all of its events, old ones included.

A row keeps some of the dimensions, named by its grain (a bit mask): 0 keeps none (one row per
metric and hour, for unfiltered reads), a single bit keeps one dimension (filters or group-by on
it), and the cube (rollup_sql.CUBE_GRAIN) keeps status, priority and channel together, for any
filter or group-by over those three. A dimension a row does not keep is '' (NULL for assigned_to,
whose NULL means unassigned when kept); the grain in the unique index tells them apart. There is no
grain with every dimension on purpose: the five together have about 12,000 combinations, more than
the events of an hour even at 10M tickets a year, so such rows would be as many as the raw events
and no faster to read. A read that filters or groups on category or assigned_to together with
another dimension is answered from raw events; planner.grain_for picks the grain of the others.

Builds, merges and folds of one organization are serialized by a transaction-level advisory lock,
so two refreshes never write rollups from different snapshots in the wrong order, and a fold never
adds to a row a build is replacing from a snapshot that lacks the folded events (or already has them).
They must run at READ COMMITTED: the build statement has to see everything committed before the
lock was granted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import business_rollups
from webapp.analytics.metrics import ROLLED_METRICS, Metric
from webapp.analytics.rollup_sql import (
    DELTAS,
    build_sql,
    drop_stray_deltas_sql,
    fold_sql,
    merge_sql,
    statement_params,
)
from webapp.analytics.sql import set_local
from webapp.core.timeutil import utcnow

log = logging.getLogger(__name__)

ROLLED_EVENT_TYPES = tuple(dict.fromkeys(m.event_type for m in ROLLED_METRICS.values()))
# pg_advisory_xact_lock(LOCK_CLASS, org_id): "ROLL".
LOCK_CLASS = 0x524F4C4C
HOUR = timedelta(hours=1)
# A bulk build runs one statement per chunk, so memory and the transaction's work stay bounded.
BUILD_CHUNK = timedelta(days=7)
# Marks closer than this are rebuilt as one range: one statement instead of many tiny ones.
MERGE_GAP = timedelta(hours=24)
# The transaction-local setting that tells the event trigger (migration 0004) not to mark hours.
MAINTAINED_SETTING = "analytics.rollups_maintained"
# Memory for the aggregations of one merge (PostgreSQL's work_mem syntax).
MERGE_WORK_MEM = "256MB"


@dataclass
class BuildStats:
    """What a build wrote: rows inserted or changed, rows removed, dirty marks cleared."""

    written: int = 0
    removed: int = 0
    cleared: int = 0
    hours: int = 0

    def __iadd__(self, other: BuildStats) -> BuildStats:
        self.written += other.written
        self.removed += other.removed
        self.cleared += other.cleared
        self.hours += other.hours
        return self


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour holding `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first UTC hour boundary at or after `moment`."""
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def lock(session: Session, org_id: int, *, wait: bool = True) -> bool:
    """Take the organization's rollup lock until the transaction ends; False if busy and not `wait`."""
    if wait:
        session.execute(text("SELECT pg_advisory_xact_lock(:cls, :org)"), {"cls": LOCK_CLASS, "org": org_id})
        return True
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:cls, :org)"), {"cls": LOCK_CLASS, "org": org_id}
        ).scalar()
    )


def _metrics_of(event_types: Iterable[str]) -> list[Metric]:
    types = set(event_types)
    unknown = types - set(ROLLED_EVENT_TYPES)
    if unknown:
        raise ValueError(
            f"no rollup is built from {sorted(unknown)}; allowed: {', '.join(ROLLED_EVENT_TYPES)}"
        )
    return [m for m in ROLLED_METRICS.values() if m.event_type in types]


def build(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    event_types: Iterable[str] = ROLLED_EVENT_TYPES,
    locked: bool = False,
    fold_sketches: bool = False,
) -> BuildStats:
    """(Re)build the rollups of [start, end), widened to whole UTC hours, from the raw events.

    One INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE per chunk of BUILD_CHUNK; rows that
    did not change are not rewritten, rows whose cell has no events any more are deleted, and the
    dirty marks inside the range are cleared. `fold_sketches`: a sketch an import merged counts as
    unchanged when its buckets are (see rollup_sql.build_sql). The caller commits.
    """
    types = set(event_types)
    metrics = _metrics_of(types)
    if not metrics:
        return BuildStats()
    if not locked:
        lock(session, org_id)
    sql = text(build_sql(metrics, fold_sketches=fold_sketches))
    params = statement_params(metrics, org_id)
    stats = BuildStats()
    lo, last = floor_hour(start), ceil_hour(end)
    # The CTEs have no statistics, so the planner guesses a handful of rows and picks nested loops
    # (the NOT EXISTS of vanished rows goes quadratic: ~10 s for a 7-day chunk of an import instead
    # of 0.3 s hashed).
    with _planner_settings(session, enable_nestloop="off"):
        while lo < last:
            hi = min(lo + BUILD_CHUNK, last)
            row = session.execute(sql, {**params, "start": lo, "end": hi}).one()
            stats += BuildStats(int(row.written), int(row.removed), int(row.cleared), int((hi - lo) / HOUR))
            # The marks just cleared were the business rollups' too: rebuild the same hours there.
            business_rollups.build(session, org_id=org_id, start=lo, end=hi, event_types=types)
            lo = hi
    return stats


def build_business(
    session: Session, *, org_id: int, schedule_id: int, now: datetime | None = None, wait: bool = True
) -> int | None:
    """Build a schedule's business rollups afresh (business_rollups.rebuild_schedule) under the
    organization's lock; None when the schedule is gone or, not `wait`ing, the lock is busy."""
    if not lock(session, org_id, wait=wait):
        return None
    with _planner_settings(session, enable_nestloop="off"):
        return business_rollups.rebuild_schedule(
            session, org_id=org_id, schedule_id=schedule_id, end=ceil_hour(now or utcnow())
        )


@contextmanager
def _planner_settings(session: Session, **values: str) -> Iterator[None]:
    """Settings for the statements inside only: transaction-local, then set back.

    Not set back when a statement fails: the rollback that has to follow undoes them anyway.
    """
    previous = {
        name: session.execute(text("SELECT current_setting(:name)"), {"name": name}).scalar()
        for name in values
    }
    for name, value in values.items():
        set_local(session, name, value)
    yield
    for name, value in previous.items():
        set_local(session, name, value)


def suppress_marks(session: Session, on: bool) -> None:
    """Whether events this transaction inserts into ticket_events from now on mark dirty hours.

    Only for a writer that adds those events to the rollups itself (merge_new_events) in the same
    transaction: the insert trigger skips marking while the transaction-local setting is on.
    """
    set_local(session, MAINTAINED_SETTING, "on" if on else "off")


@contextmanager
def marks_suppressed(session: Session) -> Iterator[None]:
    """suppress_marks for the statements inside."""
    suppress_marks(session, True)
    try:
        yield
    finally:
        suppress_marks(session, False)


def merge_new_events(
    session: Session, *, org_id: int, events: str, tickets: str, locked: bool = False
) -> BuildStats:
    """Add the rollups of new events, in the caller's transaction: one row per cell appended to the
    deltas (analytics_metric_deltas), which readers add to the cell's row until fold_deltas moves
    them into it. Appending costs a tenth of updating the rows in place.

    `events` names a table holding events of `org_id` that this transaction inserted into
    ticket_events with marks suppressed (suppress_marks), and `tickets` one holding their tickets (for values
    read from the ticket, such as sentiment). Both are the caller's own staging tables, never input.
    No hour is marked.

    The organization's rollup lock is held until the transaction ends (taken here unless `locked`):
    a build that ran before it read none of these events, so adding them on top of its rows is
    exact; a build after it waits for the commit and then reads them itself (it replaces rows).
    """
    metrics = _metrics_of(ROLLED_EVENT_TYPES)
    if not locked:
        lock(session, org_id)
    # Staging tables have no statistics: the planner would guess a handful of rows and join them in
    # nested loops (quadratic), and size the aggregation, a sketch per row being written, too small.
    params = statement_params(metrics, org_id)
    with _planner_settings(session, enable_nestloop="off", work_mem=MERGE_WORK_MEM):
        result = session.execute(text(merge_sql(metrics, events=events, tickets=tickets)), params)
        business_rollups.merge_new_events(session, org_id=org_id, events=events)
    return BuildStats(written=int(result.rowcount or 0))


def fold_deltas(session: Session, *, org_id: int, locked: bool = False) -> int:
    """Move the organization's deltas into its rows of analytics_metrics (counts and sums added,
    min and max widened, sketches merged); the rows written. The caller commits.

    Under the organization's rollup lock (taken here unless `locked`), like every writer of its rows.
    """
    if not session.execute(
        text(f"SELECT EXISTS (SELECT 1 FROM {DELTAS} WHERE org_id = :org_id)"), {"org_id": org_id}
    ).scalar():
        return 0
    if not locked:
        lock(session, org_id)
    session.execute(text(drop_stray_deltas_sql(ROLLED_EVENT_TYPES)), {"org_id": org_id})
    with _planner_settings(session, enable_nestloop="off", work_mem=MERGE_WORK_MEM):
        result = session.execute(text(fold_sql()), {"org_id": org_id})
    return int(result.rowcount or 0)


def delta_orgs(session: Session) -> list[int]:
    """Organizations with deltas to fold."""
    return list(session.scalars(text(f"SELECT DISTINCT org_id FROM {DELTAS} ORDER BY org_id")))


@dataclass(frozen=True)
class Mark:
    event_type: str
    lo: datetime
    hi: datetime


def pending(session: Session, *, org_id: int, before: datetime) -> list[Mark]:
    """The organization's dirty marks that begin before `before`, cut off there."""
    rows = session.execute(
        text(
            "SELECT event_type, lo, least(hi, :before) AS hi FROM analytics_rollup_dirty"
            " WHERE org_id = :org_id AND lo < :before ORDER BY lo"
        ),
        {"org_id": org_id, "before": before},
    )
    return [Mark(row.event_type, row.lo, row.hi) for row in rows]


def plan(marks: Sequence[Mark], *, max_hours: int | None = None) -> list[tuple[datetime, datetime, set[str]]]:
    """Ranges (lo, hi, event types) that rebuild every mark, near ones merged, up to `max_hours` hours."""
    ranges: list[tuple[datetime, datetime, set[str]]] = []
    for mark in sorted(marks, key=lambda m: m.lo):
        if ranges and mark.lo <= ranges[-1][1] + MERGE_GAP:
            lo, hi, types = ranges[-1]
            ranges[-1] = (lo, max(hi, mark.hi), types | {mark.event_type})
        else:
            ranges.append((mark.lo, mark.hi, {mark.event_type}))
    if max_hours is None:
        return ranges
    budget = timedelta(hours=max_hours)
    out = []
    for lo, hi, types in ranges:
        if budget <= timedelta(0):
            break
        take = min(hi - lo, budget)
        out.append((lo, lo + take, types))
        budget -= take
    return out


def refresh(
    session: Session,
    *,
    org_id: int,
    now: datetime | None = None,
    max_hours: int | None = None,
    wait: bool = True,
) -> BuildStats | None:
    """Rebuild the closed hours marked dirty for `org_id` (at most `max_hours` of them).

    The open hour is left alone: reads take it from raw events anyway, and rebuilding it on every
    write would redo the same hour over and over. None when nothing was due, or when another refresh
    holds the lock and `wait` is False (its marks stay, so reads stay exact). The caller commits.
    """
    closed = floor_hour(now or utcnow())
    if not pending(session, org_id=org_id, before=closed):
        return None
    if not lock(session, org_id, wait=wait):
        return None
    # Read again under the lock: the first look may predate another refresh that just finished.
    stats = BuildStats()
    for lo, hi, types in plan(pending(session, org_id=org_id, before=closed), max_hours=max_hours):
        stats += build(session, org_id=org_id, start=lo, end=hi, event_types=types, locked=True)
    return stats


def pending_orgs(session: Session, *, now: datetime | None = None) -> list[int]:
    """Organizations with dirty marks in closed hours: the ones a periodic refresh should visit."""
    closed = floor_hour(now or utcnow())
    return list(
        session.scalars(
            text("SELECT DISTINCT org_id FROM analytics_rollup_dirty WHERE lo < :closed ORDER BY org_id"),
            {"closed": closed},
        )
    )


def reconcile(session: Session, *, org_id: int, start: datetime, end: datetime) -> BuildStats:
    """Rebuild [start, end) from raw events and say how many rows had drifted (written + removed).

    With every writer marking its hours (or adding its own rollups, as imports do) this finds
    nothing; it is the safety net for writes that bypassed the triggers (a disabled trigger, a
    restored backup). The caller commits.
    """
    # Folded first: a build compares its rows with the stored ones, which lack the deltas.
    lock(session, org_id)
    fold_deltas(session, org_id=org_id, locked=True)
    stats = build(session, org_id=org_id, start=start, end=end, fold_sketches=True, locked=True)
    if stats.written or stats.removed:
        log.info(
            "rollups reconciled org=%s %s..%s: %s rows written, %s removed",
            org_id,
            start.isoformat(),
            end.isoformat(),
            stats.written,
            stats.removed,
        )
    return stats
