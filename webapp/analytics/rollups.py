"""Hourly rollups in analytics_metrics, kept exact by the dirty hours the raw tables mark.

Every write of ticket_events, and every sentiment change of a ticket, marks the UTC hours it
touched in analytics_rollup_dirty, inside the writer's transaction (the triggers of migration
0002_rollups). Reads trust a rollup hour only while no mark covers it, so answers are exact whoever
wrote the events: the API, a COPY seed, SQL by hand. A refresh rebuilds marked hours from raw events
and deletes the marks it saw, in the same statement, so a mark committed while it ran survives.

Bulk writes (imports) only insert tickets with their events, so they keep the rollups current
themselves: in the transaction that inserts the events they add those events' counts, sums,
minimum, maximum and sketch buckets to the rows of their cells (merge_new_events), and the insert
trigger marks nothing for them (the setting of migration 0004). A refresh would instead rebuild
every hour they touched from all of its events, old ones included.

A row keeps some of the dimensions, named by its grain (a bit mask): 0 keeps none (one row per
metric and hour, for unfiltered reads), a single bit keeps one dimension (filters or group-by on
it). A dimension a row does not keep is '' (NULL for assigned_to, whose NULL means unassigned when
kept); the grain in the unique index tells them apart. There is no grain with every dimension on
purpose: the five together have about 12,000 combinations, more than the events of an hour even at
10M tickets a year, so such rows would be as many as the raw events and no faster to read. A read
that filters or groups on two or more dimensions is answered from raw events.

Builds and merges of one organization are serialized by a transaction-level advisory lock, so two
refreshes never write rollups from different snapshots in the wrong order, and a merge never adds
to a row a build is replacing from a snapshot that lacks the merged events (or already has them).
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

from webapp.analytics import sketch
from webapp.analytics.metrics import METRICS, Metric
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import DIMENSIONS

log = logging.getLogger(__name__)

DIMENSION_BITS = {name: 1 << i for i, name in enumerate(DIMENSIONS)}
ALL_DIMENSIONS = (1 << len(DIMENSIONS)) - 1
GRAINS = (0, *DIMENSION_BITS.values())
ROLLED_EVENT_TYPES = tuple(dict.fromkeys(m.event_type for m in METRICS.values()))
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
# A sketch a merge writes has its repeated keys folded once it is longer than this (bytes; 256
# pairs): below it a few repeats cost less than folding every sketch, above it they would pile up.
FOLD_SKETCH_BYTES = 256 * sketch.PAIR.itemsize


def grain_for(dimensions: Iterable[str]) -> int | None:
    """The coarsest grain that keeps every dimension in `dimensions`; None when no grain does."""
    needed = set(dimensions)
    if not needed:
        return 0
    if len(needed) == 1:
        return DIMENSION_BITS[needed.pop()]
    return None


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
    return [m for m in METRICS.values() if m.event_type in types]


def _grouping_sets() -> str:
    sets = [f"({', '.join(d for d in DIMENSIONS if bits & DIMENSION_BITS[d])})" for bits in GRAINS]
    return ", ".join(sets)


def _events_sql(metrics: Sequence[Metric], *, events: str, tickets: str, window: bool) -> str:
    """One row per measurement: metric, UTC hour, the dimensions, value v and sketch key k.

    Read from `events` (joined to `tickets` for values of the ticket); `window` limits them to
    [:start, :end), without it every event of the organization in `events` counts (a staging table
    of new events). Shared by build and merge_new_events, so both measure events the same way.
    """
    branches = []
    for i, metric in enumerate(metrics):
        join = (
            f" JOIN {tickets} t ON t.id = e.ticket_id AND t.org_id = e.org_id" if metric.joins_ticket else ""
        )
        value = metric.value_sql or "CAST(NULL AS double precision)"
        bounds = " AND e.occurred_at >= :start AND e.occurred_at < :end" if window else ""
        branches.append(
            f"SELECT CAST(:metric_{i} AS text) AS metric, date_trunc('hour', e.occurred_at, 'UTC') AS h,"
            f" {', '.join(f'e.{d}' for d in DIMENSIONS)}, {value} AS v, {sketch.sql_key(value)} AS k"
            f" FROM {events} e{join} WHERE e.org_id = :org_id AND e.event_type = :event_type_{i}{bounds}"
        )
    return " UNION ALL ".join(branches)


def _grain_sql() -> str:
    # GROUPING() has a bit set per dimension left out, the first argument highest: reversed, the
    # bits line up with DIMENSION_BITS.
    return f"CAST({ALL_DIMENSIONS} - GROUPING({', '.join(reversed(DIMENSIONS))}) AS smallint)"


def _kept_dimensions_sql() -> str:
    """The dimension columns of a grouping set's row: '' for one left out (NULL for assigned_to)."""
    return ", ".join(f"coalesce({d}, '') AS {d}" if d != "assigned_to" else d for d in DIMENSIONS)


def _build_sql(metrics: Sequence[Metric], *, fold_sketches: bool = False) -> str:
    """One statement: compute the range's rows, upsert the changed ones, drop vanished ones, clear marks.

    A row changed when its values did. Its sketch counts as changed when its bytes differ, or with
    `fold_sketches` only when its folded buckets do: an import merges sketches as a concatenation
    in another order (see _merge_sql), the same sketch in other bytes. Folding costs more than
    rewriting the row, so only a reconcile, which reports rewritten rows as drift, asks for it.
    """
    dims = ", ".join(DIMENSIONS)
    # Plain equalities (NULL only in assigned_to, compared apart) keep the anti-join a hash join.
    same_cell = " AND ".join(
        ["f.metric = m.metric", "f.grain = m.grain", "f.bucket_start = m.bucket_start"]
        + [f"f.{d} = m.{d}" for d in DIMENSIONS if d != "assigned_to"]
        + [
            "coalesce(f.assigned_to, '') = coalesce(m.assigned_to, '')",
            "(f.assigned_to IS NULL) = (m.assigned_to IS NULL)",
        ]
    )
    sketch_changed = " OR m.sketch IS DISTINCT FROM EXCLUDED.sketch"
    if fold_sketches:
        sketch_changed += f" AND {_fold_sql('m.sketch')} IS DISTINCT FROM {_fold_sql('EXCLUDED.sketch')}"
    cells = (
        f"WITH ev AS ({_events_sql(metrics, events='ticket_events', tickets='tickets', window=True)}),"
        f" cells AS (SELECT metric, h, {_grain_sql()} AS grain, {dims}, k, count(*) AS events,"
        " count(v) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi"
        f" FROM ev GROUP BY metric, h, k, GROUPING SETS ({_grouping_sets()})),"
        f" fresh AS (SELECT metric, grain, h AS bucket_start, {_kept_dimensions_sql()},"
        " CASE WHEN metric = ANY(CAST(:count_metrics AS text[])) THEN sum(events) ELSE sum(n) END AS count,"
        " sum(s) AS sum, min(lo) AS min, max(hi) AS max,"
        # Unordered: a sketch's pairs may come in any order, and no sort lets this be a hash aggregate.
        " string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea)"
        " FILTER (WHERE n > 0) AS sketch"
        f" FROM cells GROUP BY metric, grain, h, {dims}),"
        " kept AS (SELECT * FROM fresh WHERE count > 0)"
    )
    return (
        cells
        + f", written AS (INSERT INTO analytics_metrics AS m (org_id, metric, grain, bucket_start, {dims},"
        " count, sum, min, max, sketch, updated_at)"
        f" SELECT :org_id, metric, grain, bucket_start, {dims}, count, sum, min, max, sketch, now() FROM kept"
        f" ON CONFLICT (org_id, metric, grain, bucket_start, {dims}) DO UPDATE SET count = EXCLUDED.count,"
        " sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch,"
        " updated_at = EXCLUDED.updated_at"
        # Sums of one set of values can differ in the last bits with the order they were added in.
        " WHERE (m.count, m.min, m.max) IS DISTINCT FROM (EXCLUDED.count, EXCLUDED.min, EXCLUDED.max)"
        " OR (m.sum IS NULL) <> (EXCLUDED.sum IS NULL)"
        " OR abs(m.sum - EXCLUDED.sum) > 1e-9 * greatest(abs(m.sum), abs(EXCLUDED.sum), 1e-300)"
        + sketch_changed
        + " RETURNING 1),"
        " removed AS (DELETE FROM analytics_metrics m WHERE m.org_id = :org_id"
        " AND m.metric = ANY(CAST(:metrics AS text[])) AND m.bucket_start >= :start AND m.bucket_start < :end"
        f" AND NOT EXISTS (SELECT 1 FROM kept f WHERE {same_cell}) RETURNING 1),"
        # Marks inside the range are done; marks reaching out of it keep only their outside part.
        " cleared AS (DELETE FROM analytics_rollup_dirty d WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo >= :start AND d.hi <= :end"
        " RETURNING 1),"
        " trimmed_end AS (UPDATE analytics_rollup_dirty d SET lo = :end WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo >= :start AND d.lo < :end"
        " AND d.hi > :end RETURNING 1),"
        " trimmed_start AS (UPDATE analytics_rollup_dirty d SET hi = :start WHERE d.org_id = :org_id"
        " AND d.event_type = ANY(CAST(:event_types AS text[])) AND d.lo < :start AND d.hi > :start"
        " AND d.hi <= :end RETURNING 1)"
        " SELECT (SELECT count(*) FROM written) AS written, (SELECT count(*) FROM removed) AS removed,"
        " (SELECT count(*) FROM cleared) AS cleared"
    )


def _params(metrics: Sequence[Metric], org_id: int) -> dict[str, object]:
    params: dict[str, object] = {
        "org_id": org_id,
        "metrics": [m.name for m in metrics],
        "count_metrics": [m.name for m in metrics if m.is_count],
        "event_types": sorted({m.event_type for m in metrics}),
    }
    for i, metric in enumerate(metrics):
        params[f"metric_{i}"] = metric.name
        params[f"event_type_{i}"] = metric.event_type
    return params


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
    unchanged when its buckets are (see _build_sql). The caller commits.
    """
    metrics = _metrics_of(event_types)
    if not metrics:
        return BuildStats()
    if not locked:
        lock(session, org_id)
    sql = text(_build_sql(metrics, fold_sketches=fold_sketches))
    params = _params(metrics, org_id)
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
            lo = hi
    return stats


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
        session.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
    yield
    for name, value in previous.items():
        session.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def _fold_sql(blob: str) -> str:
    """SQL for the sketch `blob` with repeated keys folded into one pair each (keys ascending)."""
    # get_byte is unsigned: the key's high byte carries the sign of the int16; a count is positive.
    key = "get_byte(b, i) * 256 + get_byte(b, i + 1) - CASE WHEN get_byte(b, i) >= 128 THEN 65536 ELSE 0 END"
    count = (
        "((CAST(get_byte(b, i + 2) AS bigint) * 256 + get_byte(b, i + 3)) * 256"
        " + get_byte(b, i + 4)) * 256 + get_byte(b, i + 5)"
    )
    return (
        "(SELECT string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea ORDER BY k)"
        # OFFSET 0 keeps `blob` a subquery evaluated once, not an expression inlined into every use.
        f" FROM (SELECT {key} AS k, sum({count}) AS n FROM (SELECT {blob} AS b OFFSET 0) blob,"
        " generate_series(0, length(b) - 6, 6) AS i GROUP BY 1) pairs)"
    )


def _merge_sql(metrics: Sequence[Metric], *, events: str, tickets: str) -> str:
    """One statement: add the rollup rows of the staged new events to analytics_metrics.

    One aggregation straight from the measurements to the rows (a build aggregates per sketch key
    first, to fold repeated keys): a sketch of new values is one (key, 1) pair per value, folded
    only past FOLD_SKETCH_BYTES. Folding every sketch here would cost as much as the rest.
    """
    dims = ", ".join(DIMENSIONS)
    fold = int(FOLD_SKETCH_BYTES)
    both = "m.sketch || EXCLUDED.sketch"
    return (
        f"WITH ev AS ({_events_sql(metrics, events=events, tickets=tickets, window=False)}),"
        f" delta AS (SELECT metric, {_grain_sql()} AS grain, h AS bucket_start, {_kept_dimensions_sql()},"
        " CASE WHEN metric = ANY(CAST(:count_metrics AS text[])) THEN count(*) ELSE count(v) END AS count,"
        " sum(v) AS sum, min(v) AS min, max(v) AS max,"
        " string_agg(int2send(CAST(k AS int2)) || int4send(1), ''::bytea) FILTER (WHERE v IS NOT NULL)"
        f" AS sketch FROM ev GROUP BY metric, h, GROUPING SETS ({_grouping_sets()}))"
        f" INSERT INTO analytics_metrics AS m (org_id, metric, grain, bucket_start, {dims},"
        " count, sum, min, max, sketch, updated_at)"
        f" SELECT :org_id, metric, grain, bucket_start, {dims}, count, sum, min, max,"
        f" CASE WHEN length(sketch) > {fold} THEN {_fold_sql('sketch')} ELSE sketch END, now()"
        " FROM delta WHERE count > 0"
        f" ON CONFLICT (org_id, metric, grain, bucket_start, {dims}) DO UPDATE SET"
        " count = m.count + EXCLUDED.count,"
        " sum = CASE WHEN m.sum IS NULL THEN EXCLUDED.sum WHEN EXCLUDED.sum IS NULL THEN m.sum"
        " ELSE m.sum + EXCLUDED.sum END,"
        # least and greatest skip NULLs: a count metric's rows keep NULL.
        " min = least(m.min, EXCLUDED.min), max = greatest(m.max, EXCLUDED.max),"
        # Concatenated sketches are merged ones (sketch.py): adding bucket counts in place would
        # decode every sketch, for no difference in any answer. Only a sketch grown past
        # FOLD_SKETCH_BYTES is folded, which bounds what repeated imports into one hour leave.
        " sketch = CASE WHEN m.sketch IS NULL THEN EXCLUDED.sketch WHEN EXCLUDED.sketch IS NULL THEN m.sketch"
        f" WHEN length(m.sketch) + length(EXCLUDED.sketch) <= {fold} THEN {both}"
        f" ELSE {_fold_sql(both)} END,"
        " updated_at = EXCLUDED.updated_at"
    )


def suppress_marks(session: Session, on: bool) -> None:
    """Whether events this transaction inserts into ticket_events from now on mark dirty hours.

    Only for a writer that adds those events to the rollups itself (merge_new_events) in the same
    transaction: the insert trigger skips marking while the transaction-local setting is on.
    """
    session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": MAINTAINED_SETTING, "value": "on" if on else "off"},
    )


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
    """Add the rollups of new events to analytics_metrics, in the caller's transaction.

    `events` names a table holding events of `org_id` that this transaction inserted into
    ticket_events with marks suppressed (suppress_marks), and `tickets` one holding their tickets (for values
    read from the ticket, such as sentiment). Both are the caller's own staging tables, never input.
    Each cell gets count and sum added, min and max widened, sketch merged, and no hour is marked.

    The organization's rollup lock is held until the transaction ends (taken here unless `locked`):
    a build that ran before it read none of these events, so adding them on top of its rows is
    exact; a build after it waits for the commit and then reads them itself (it replaces rows).
    """
    metrics = _metrics_of(ROLLED_EVENT_TYPES)
    if not locked:
        lock(session, org_id)
    # Staging tables have no statistics: the planner would guess a handful of rows and join them in
    # nested loops (quadratic), and size the aggregation, a sketch per row being written, too small.
    with _planner_settings(session, enable_nestloop="off", work_mem=MERGE_WORK_MEM):
        result = session.execute(
            text(_merge_sql(metrics, events=events, tickets=tickets)), _params(metrics, org_id)
        )
    return BuildStats(written=int(result.rowcount or 0))


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
    stats = build(session, org_id=org_id, start=start, end=end, fold_sketches=True)
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
