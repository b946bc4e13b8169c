"""Period snapshots: the KPIs of one local day, week or month, upserted into analytics_snapshots."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from webapp.analytics import current, queries, sla_compliance
from webapp.analytics.buckets import next_period, period_start
from webapp.analytics.window import QueryError, canonical_window
from webapp.core.timeutil import local_midnight, utcnow, zone
from webapp.core.vocabulary import SNAPSHOT_TYPES
from webapp.models import AnalyticsSnapshot, Organization

# Bumped whenever what a snapshot holds or how it is computed changes, so old rows can be told apart.
DEFINITION_VERSION = 2
# The definition_version of a first compute's placeholder row (see begin_compute): no snapshot yet.
PLACEHOLDER_VERSION = 0
# pg_advisory_xact_lock(WRITERS_LOCK_CLASS, org_id): "SNAP". Every write of ticket events takes it
# shared as its trigger marks stale snapshots (migration 0034); begin_compute takes it exclusively.
WRITERS_LOCK_CLASS = 0x534E4150
# begin_compute asks for the writers' lock without queueing (a queued exclusive request would hold up
# every new write of the organization behind a long import); past this long it queues, for at most
# LOCK_QUEUE_SECONDS at a time.
WRITERS_WAIT_SECONDS = 30.0
LOCK_QUEUE_SECONDS = 2.0
PERCENTILES = (50, 95, 99)
MEASURED = ("response_time", "resolution_time", "sentiment_score")
# A listing's default range: the contract's last 30 days for daily snapshots (as every analytics
# route), about half a year of weeks, a year of months.
LISTING_DAYS = {"daily": 30, "weekly": 26 * 7, "monthly": 366}


def job_params(snapshot_type: str, first_date: date) -> dict[str, str]:
    """A snapshot job's params; the API and beat build them alike, so their jobs deduplicate."""
    return {"snapshot_type": snapshot_type, "snapshot_date": first_date.isoformat()}


def listing_range(
    start: str | None, end: str | None, *, snapshot_type: str, tz: str, now: datetime
) -> tuple[date, date]:
    """The first and the exclusive last period date a listing asks for, read in the zone `tz`."""
    window = canonical_window(start, end, tz=None, default_tz=tz, now=now, days=LISTING_DAYS[snapshot_type])
    first, last = window.local_dates()
    if first >= last:
        raise QueryError(f"start ({first}) must be before end ({last})", "start")
    return first, last


def snapshot_period(snapshot_type: str, snapshot_date: date) -> tuple[date, date]:
    """First local date of the period holding `snapshot_date`, and of the period after it."""
    if snapshot_type not in SNAPSHOT_TYPES:
        raise ValueError(f"unknown snapshot type {snapshot_type!r}; allowed: {', '.join(SNAPSHOT_TYPES)}")
    first = period_start(snapshot_type, snapshot_date)
    return first, next_period(snapshot_type, first)


def requested_period(snapshot_type: str, snapshot_date: date, *, tz: str, now: datetime) -> date:
    """The first local date of the period a client asks to snapshot; QueryError (400) for one that
    has not begun in the zone `tz` (its snapshot would be all zeros, listed as if it were data), or
    a day the zone's clock skipped (Pacific/Apia's 2011-12-30: no time at all)."""
    first, after = snapshot_period(snapshot_type, snapshot_date)
    zone_info = zone(tz)
    today = now.astimezone(zone_info).date()
    if first > today:
        raise QueryError(
            f"the {snapshot_type} period starting {first} has not begun (today is {today} in {tz})", "date"
        )
    if local_midnight(first, zone_info) == local_midnight(after, zone_info):
        raise QueryError(f"the day {first} never came in {tz}: its clock skipped it", "date")
    return first


def _period_instants(
    session: Session, org_id: int, snapshot_type: str, snapshot_date: date
) -> tuple[date, datetime, datetime, str]:
    """The period's first local date, its bounds as instants, and the organization's zone."""
    org = session.get(Organization, org_id)
    if org is None:
        raise LookupError(f"organization {org_id} does not exist")
    tz = zone(org.timezone)
    first, after = snapshot_period(snapshot_type, snapshot_date)
    return first, local_midnight(first, tz), local_midnight(after, tz), tz.key


def begin_compute(session: Session, *, org_id: int, snapshot_type: str, snapshot_date: date) -> uuid.UUID:
    """Ready the stored row of this period for a compute that starts after this returns (committed),
    and the token its upsert_snapshot must give.

    Whatever the compute reads must not be stored as fresh if a write of events into the period lands
    meanwhile. Every such write takes the organization's writers' lock shared as its trigger runs
    (and holds it until it commits), and marks the rows it reaches stale and `written`. Taking the
    lock exclusively here waits until each write whose trigger has run has committed, so the compute
    reads it; then, still under the lock, the row gets this compute's token in `computing` and
    `written` cleared (a first compute stores a placeholder, PLACEHOLDER_VERSION, that readers take
    for no snapshot). The stale mark stays as it is until an answer is stored: a job that fails
    leaves the row as stale as it found it.
    """
    first, start, end, _ = _period_instants(session, org_id, snapshot_type, snapshot_date)
    session.commit()  # no transaction held while waiting for the writers
    _writers_lock(session, org_id)
    token = uuid.uuid4()
    statement = insert(AnalyticsSnapshot).values(
        org_id=org_id,
        snapshot_type=snapshot_type,
        snapshot_date=first,
        data={},
        definition_version=PLACEHOLDER_VERSION,
        computed_at=func.now(),
        period_start=start,
        period_end=end,
        stale=False,
        computing=token,
        written=False,
    )
    # The bounds too: they move with the organization's zone, and the trigger matches writes by them.
    set_ = {"computing": token, "written": False, "period_start": start, "period_end": end}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id", "snapshot_type", "snapshot_date"], set_=set_
        )
    )
    session.commit()
    return token


def _writers_lock(session: Session, org_id: int) -> None:
    """Take the organization's writers' lock exclusively in a transaction of `session` (the caller
    commits). Asked without queueing first (a queued exclusive request would hold up every new write
    of the organization behind a long import), backing off up to half a second; after
    WRITERS_WAIT_SECONDS it queues, but for LOCK_QUEUE_SECONDS at a time, with a pause between."""
    lock = {"cls": WRITERS_LOCK_CLASS, "org": org_id}
    deadline = time.monotonic() + WRITERS_WAIT_SECONDS
    pause = 0.02
    while True:
        if time.monotonic() < deadline:
            if session.scalar(text("SELECT pg_try_advisory_xact_lock(:cls, :org)"), lock):
                return
        else:
            session.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_QUEUE_SECONDS * 1000)}ms'"))
            try:
                session.execute(text("SELECT pg_advisory_xact_lock(:cls, :org)"), lock)
            except OperationalError as exc:
                if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                    raise
            else:
                session.execute(text("SET LOCAL lock_timeout = 0"))
                return
        session.rollback()
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def compute_snapshot(
    session: Session, *, org_id: int, snapshot_type: str, snapshot_date: date
) -> dict[str, Any]:
    """The KPIs of the org-local period (day, week from Monday, month) that holds `snapshot_date`."""
    first, start, end, tz_name = _period_instants(session, org_id, snapshot_type, snapshot_date)
    window = {"org_id": org_id, "start": start, "end": end, "filters": {}}
    data: dict[str, Any] = {
        "snapshot_type": snapshot_type,
        "snapshot_date": first.isoformat(),
        "timezone": tz_name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "ticket_count": queries.measure(session, metric="ticket_count", **window)["count"],
    }
    for metric in MEASURED:
        data[metric] = queries.measure(session, metric=metric, percentiles=PERCENTILES, **window)
    data["priority"] = current.distribution(session, field="priority", **window)["values"]
    data["status"] = current.distribution(session, field="status", **window)["values"]
    # Under the SLA policy in force as the snapshot is computed, as the performance report counts it.
    data["sla"] = sla_compliance.report(session, now=utcnow(), **window)
    return data


def upsert_snapshot(
    session: Session,
    *,
    org_id: int,
    snapshot_type: str,
    snapshot_date: date,
    data: dict[str, Any],
    definition_version: int = DEFINITION_VERSION,
    token: uuid.UUID | None = None,
) -> bool:
    """Insert the snapshot, or replace the one of the same org, type and period: a rerun never
    duplicates. False when nothing was stored.

    With the `token` begin_compute gave, a stored row is replaced only while that token is still the
    row's (a compute that began later has read more: its answer wins), and stays stale exactly when
    a write reached the period since the compute began. Without one (no begin_compute), only a row
    no compute has begun on is replaced, as fresh."""
    first, _ = snapshot_period(snapshot_type, snapshot_date)
    statement = insert(AnalyticsSnapshot).values(
        org_id=org_id,
        snapshot_type=snapshot_type,
        snapshot_date=first,
        data=data,
        definition_version=definition_version,
        computed_at=func.now(),
        period_start=datetime.fromisoformat(data["start"]),
        period_end=datetime.fromisoformat(data["end"]),
        stale=False,
        computing=None,
        written=False,
    )
    table = AnalyticsSnapshot.__table__
    statement = statement.on_conflict_do_update(
        index_elements=["org_id", "snapshot_type", "snapshot_date"],
        set_={
            "data": statement.excluded.data,
            "definition_version": statement.excluded.definition_version,
            "computed_at": statement.excluded.computed_at,
            "period_start": statement.excluded.period_start,
            "period_end": statement.excluded.period_end,
            "stale": table.c.written,
            "computing": None,
            "written": False,
        },
        where=table.c.computing.is_not_distinct_from(token),
    )
    return session.execute(statement.returning(table.c.id)).first() is not None


# What the events' trigger (migration 0034) does for a write that appends no event: under the
# organization's shared writers' lock, the stored snapshots whose period holds `at` marked stale.
_WRITERS_SHARED = text("SELECT pg_advisory_xact_lock_shared(:lock_class, :org_id)")
_MARK_STALE = text(
    "UPDATE analytics_snapshots s SET stale = true, written = true "
    "WHERE s.org_id = :org_id AND NOT (s.stale AND s.written) "
    "AND s.period_start <= :at AND s.period_end > :at"
)


def mark_stale(session: Session, org_id: int, at: datetime) -> None:
    """A write with no event of its own (a public reply: the SLA's next_reply counts) reached `at`:
    the snapshots of the periods holding it are computed again, as a back-filled event's are."""
    session.execute(_WRITERS_SHARED, {"lock_class": WRITERS_LOCK_CLASS, "org_id": org_id})
    session.execute(_MARK_STALE, {"org_id": org_id, "at": at})


def stale_snapshots(session: Session, *, org_id: int) -> list[tuple[str, date]]:
    """(type, first date) of the organization's stored snapshots a later write of events reached."""
    rows = session.execute(
        select(AnalyticsSnapshot.snapshot_type, AnalyticsSnapshot.snapshot_date)
        .where(AnalyticsSnapshot.org_id == org_id, AnalyticsSnapshot.stale)
        .order_by(AnalyticsSnapshot.snapshot_date)
    )
    return [(row.snapshot_type, row.snapshot_date) for row in rows]


def is_fresh(session: Session, org_id: int, snapshot_type: str, first_date: date) -> bool:
    """Whether the stored snapshot of this period is no longer stale (recomputed since, or gone)."""
    stale = session.scalar(
        select(AnalyticsSnapshot.stale).where(
            AnalyticsSnapshot.org_id == org_id,
            AnalyticsSnapshot.snapshot_type == snapshot_type,
            AnalyticsSnapshot.snapshot_date == first_date,
        )
    )
    return not stale


# Stale snapshots a listing computes afresh as it answers (the first ones, oldest first); any more
# are listed as stored, with `stale: true`, until beat's snapshot pass recomputes them.
FRESHENED_PER_LISTING = 5


def list_snapshots(
    session: Session, *, org_id: int, snapshot_type: str, start: date, end: date
) -> list[dict[str, Any]]:
    """The org's snapshots of `snapshot_type` whose period starts in [start, end), oldest first.

    A snapshot a later write reached (an import back-filling its day) is computed afresh for the
    answer, up to FRESHENED_PER_LISTING of them (stored again by beat's pass, not by a read)."""
    rows = session.scalars(
        select(AnalyticsSnapshot)
        .where(
            AnalyticsSnapshot.org_id == org_id,
            AnalyticsSnapshot.snapshot_type == snapshot_type,
            AnalyticsSnapshot.snapshot_date >= start,
            AnalyticsSnapshot.snapshot_date < end,
            AnalyticsSnapshot.definition_version != PLACEHOLDER_VERSION,
        )
        .order_by(AnalyticsSnapshot.snapshot_date)
    )
    listed = []
    freshened = 0
    for row in rows:
        data, version, computed_at, stale = row.data, row.definition_version, row.computed_at, row.stale
        if stale and freshened < FRESHENED_PER_LISTING:
            computed_at, version = utcnow(), DEFINITION_VERSION
            data = compute_snapshot(
                session, org_id=org_id, snapshot_type=row.snapshot_type, snapshot_date=row.snapshot_date
            )
            freshened, stale = freshened + 1, False
        listed.append(
            {
                "snapshot_type": row.snapshot_type,
                "snapshot_date": row.snapshot_date.isoformat(),
                "data": data,
                "definition_version": version,
                "computed_at": computed_at.isoformat(),
                "stale": stale,
            }
        )
    return listed
