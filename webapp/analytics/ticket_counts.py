"""Tickets counted by UTC creation hour and the current value of each dimension: distributions fast.

A distribution counts the tickets created in a range by the current value of one field, so it
changes whenever a ticket does, at the hour the ticket was created. analytics_ticket_counts holds
signed deltas (org_id, hour, field, value, count): a statement trigger on tickets (migration 0011)
adds +1 for each new or changed ticket's values and -1 for its old ones, in the writer's
transaction, whoever writes (the API, an import, a COPY seed, SQL by hand). Rows are only ever
inserted by writers, so concurrent writers never wait on one another's counters, and a read sums
the deltas: exact at any snapshot, with no dirty marks and no rebuild to wait for.

A bulk writer (an import) that inserts its tickets in several statements switches the trigger's
counting off in its transaction (suppress_counts) and counts them all in one statement from its
staging table (add_tickets): the same deltas, summed over the whole batch rather than per chunk.

analytics_ticket_count_days holds the same deltas summed per UTC day (migration 0028): a trigger on
the hourly table adds each written hour's count to its day in the same transaction, so a read takes
the whole UTC days of its range from one row per day and value, and only the hours at its ends from
the hourly table.

`compact` folds each hour's deltas into one row per value, then each day's (beat runs it); `rebuild`
recounts an organization from its tickets. Each is one statement per table, so one snapshot: deltas
that writers commit meanwhile are left alone, and so are the tickets they changed, which keeps the
sum exact.

A range whose ends are not on a UTC hour (Asia/Kolkata's midnight) reads its two partial hours from
the tickets themselves, in the same statement.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics.metrics import DISTRIBUTION_FIELDS
from webapp.analytics.sql import column, set_local

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# One row per (field, value) of every ticket: the trigger's and the rebuild's unpivot.
UNPIVOT = ", ".join(f"('{name}', {{t}}.{name})" for name in DISTRIBUTION_FIELDS)
# The transaction-local setting that tells the tickets' insert trigger (migration 0017) not to count.
WRITTEN_SETTING = "analytics.ticket_counts_written"
# The transaction-local setting that tells the hourly table's trigger (migration 0028) that what a
# statement writes leaves every hour's sum, hence every day's, as it was.
DAYS_KEPT_SETTING = "analytics.ticket_count_days_kept"


def _floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime) -> datetime:
    floor = _floor(moment)
    return floor if floor == moment else floor + _HOUR


def _day_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(moment: datetime) -> datetime:
    floor = _day_floor(moment)
    return floor if floor == moment else floor + _DAY


def counts(
    session: Session, *, org_id: int, field: str, start: datetime, end: datetime
) -> tuple[dict[str | None, int], bool]:
    """Tickets created in [start, end) by the current value of `field` (values with none left out),
    and whether any of them were read from the tickets (the range's ends are not whole UTC hours).

    Whole UTC days [day_lo, day_hi) come from the day sums, the whole hours around them [lo, day_lo)
    and [day_hi, hi) from the hourly counts, and what is left at each end from the tickets."""
    name = column(field, DISTRIBUTION_FIELDS)
    lo, hi = _ceil(start), _floor(end)
    if lo >= hi:
        lo = hi = start  # no whole hour inside: every ticket of the range is read from the table
    day_lo, day_hi = _day_ceil(lo), _day_floor(hi)
    if day_lo >= day_hi:
        day_lo = day_hi = lo  # no whole day inside: every hour is read from the hourly counts
    sql = text(
        "SELECT value, sum(n) AS n FROM ("
        " SELECT d.value, sum(d.count) AS n FROM analytics_ticket_count_days d"
        " WHERE d.org_id = :org_id AND d.field = :field AND d.day >= :day_lo AND d.day < :day_hi"
        " GROUP BY d.value"
        " UNION ALL SELECT c.value, sum(c.count) FROM analytics_ticket_counts c"
        " WHERE c.org_id = :org_id AND c.field = :field"
        " AND ((c.hour >= :lo AND c.hour < :day_lo) OR (c.hour >= :day_hi AND c.hour < :hi)) GROUP BY c.value"
        f" UNION ALL SELECT t.{name}, count(*) FROM tickets t WHERE t.org_id = :org_id"
        " AND ((t.created_at >= :start AND t.created_at < :lo)"
        " OR (t.created_at >= :hi AND t.created_at < :end))"
        f" GROUP BY t.{name}) parts GROUP BY value"
    )
    params = {
        "org_id": org_id,
        "field": name,
        "lo": lo,
        "hi": hi,
        "day_lo": day_lo,
        "day_hi": day_hi,
        "start": start,
        "end": end,
    }
    return {row.value: int(row.n) for row in session.execute(sql, params) if row.n}, (lo, hi) != (start, end)


def suppress_counts(session: Session, on: bool) -> None:
    """Whether tickets this transaction inserts from now on are left uncounted by the trigger.

    Only for a writer that counts them itself (add_tickets) in the same transaction.
    """
    set_local(session, WRITTEN_SETTING, "on" if on else "off")


def add_tickets(session: Session, *, org_id: int, tickets: str) -> int:
    """Count the new tickets of `org_id` held in `tickets` (the caller's staging table, never input),
    which this transaction inserted with counting suppressed; the rows written."""
    sql = text(
        "INSERT INTO analytics_ticket_counts (org_id, hour, field, value, count)"
        " SELECT :org_id, date_trunc('hour', t.created_at, 'UTC'), f.field, f.value, count(*)"
        f" FROM {tickets} t CROSS JOIN LATERAL (VALUES {UNPIVOT.format(t='t')}) AS f(field, value)"
        " WHERE t.org_id = :org_id GROUP BY 2, 3, 4"
    )
    return int(session.execute(sql, {"org_id": org_id}).rowcount or 0)


def _fold_sql(table: str, unit: str) -> str:
    """One statement folding the organization's `unit`s (hour, day) of `table` that hold several
    deltas of one value into one row each; it answers how many units it folded."""
    return (
        f"WITH units AS (SELECT DISTINCT {unit} FROM (SELECT {unit} FROM {table}"
        f" WHERE org_id = :org_id GROUP BY {unit}, field, value HAVING count(*) > 1) d),"
        f" gone AS (DELETE FROM {table} c USING units u"
        f" WHERE c.org_id = :org_id AND c.{unit} = u.{unit} RETURNING c.{unit}, c.field, c.value, c.count),"
        f" folded AS (INSERT INTO {table} (org_id, {unit}, field, value, count)"
        f" SELECT :org_id, {unit}, field, value, sum(count) FROM gone GROUP BY {unit}, field, value"
        " HAVING sum(count) <> 0 RETURNING 1)"
        " SELECT count(*) FROM units"
    )


def compact(session: Session, *, org_id: int) -> int:
    """Fold the organization's hours that hold several deltas of one value into one row each, then
    its days the same way; how many hours were folded. The caller commits."""
    # A fold keeps every hour's sum: the day sums' trigger has nothing to add for it.
    set_local(session, DAYS_KEPT_SETTING, "on")
    hours = int(
        session.execute(text(_fold_sql("analytics_ticket_counts", "hour")), {"org_id": org_id}).scalar_one()
    )
    set_local(session, DAYS_KEPT_SETTING, "off")
    session.execute(text(_fold_sql("analytics_ticket_count_days", "day")), {"org_id": org_id})
    return hours


def rebuild(session: Session, *, org_id: int) -> int:
    """Count the organization's tickets again from scratch, hours then days; the hourly rows written.
    The caller commits."""
    set_local(session, DAYS_KEPT_SETTING, "on")
    sql = text(
        "WITH gone AS (DELETE FROM analytics_ticket_counts WHERE org_id = :org_id RETURNING 1),"
        " fresh AS (INSERT INTO analytics_ticket_counts (org_id, hour, field, value, count)"
        " SELECT :org_id, date_trunc('hour', t.created_at, 'UTC'), f.field, f.value, count(*)"
        f" FROM tickets t CROSS JOIN LATERAL (VALUES {UNPIVOT.format(t='t')}) AS f(field, value)"
        " WHERE t.org_id = :org_id GROUP BY 2, 3, 4 RETURNING 1)"
        " SELECT (SELECT count(*) FROM gone) AS gone, (SELECT count(*) FROM fresh) AS fresh"
    )
    fresh = int(session.execute(sql, {"org_id": org_id}).one().fresh)
    set_local(session, DAYS_KEPT_SETTING, "off")
    session.execute(
        text(
            "WITH gone AS (DELETE FROM analytics_ticket_count_days WHERE org_id = :org_id RETURNING 1)"
            " INSERT INTO analytics_ticket_count_days (org_id, day, field, value, count)"
            " SELECT :org_id, date_trunc('day', c.hour, 'UTC'), c.field, c.value, sum(c.count)"
            " FROM analytics_ticket_counts c WHERE c.org_id = :org_id"
            " GROUP BY 2, 3, 4 HAVING sum(c.count) <> 0"
        ),
        {"org_id": org_id},
    )
    return fresh
