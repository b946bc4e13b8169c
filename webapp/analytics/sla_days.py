"""SLA verdicts counted ahead per UTC day of creation (migration 0024), and which days of a range a
compliance read may take from them.

A day's counts (per priority, channel and assignee: achieved, breached and pending on first_reply
and resolution) hold every ticket of the day as it stood when counted, and each row keeps the sorted
instants at which its pending verdicts turn breached by time alone (migration 0027): a first reply's
deadline while it waits, and the instant a resolution's elapsed time passes its target while a
running status is open. Nothing else turns a verdict but a write. A read at `now` moves the turns
before `now` from pending to breached (a binary search of each row's arrays), so the counts stand for
the live answer, with no ticket judged, while all of these hold:
- they were counted under the policy in force (its key: calendar targets and pause statuses);
- no write has touched the facts of the day's tickets since (no mark: the facts' triggers leave one
  in the writer's transaction);
- `now` is at or after the instant they were counted at.

Any other day, and the partial days at a range's ends, are read live from the facts. Days are
counted by `count_days` (beat, every minute; `bench peer` after its rollups) once they are at least
SETTLE_DAYS old: younger days change too often to be worth it. A day with a resolution achieved
while a running status is still open (facts no domain write leaves; time would turn it breached) is
left uncounted.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sla_verdicts
from webapp.analytics.sql import filter_sql, forget_orphan_marks
from webapp.clocks.policy import Policy, policy_for
from webapp.clocks.schedules import ClockError
from webapp.core.filters import Filters

# Bump when a verdict's definition changes: every day is counted again.
DEFINITION = 3
# The dimensions a day's counts keep: compliance with filters on, or grouped by, only these.
KEPT = ("priority", "channel", "assigned_to")
# Days counted per transaction; days younger than SETTLE_DAYS (UTC) are left to live reads.
CHUNK_DAYS = 31
SETTLE_DAYS = 1
LOCK_CLASS = zlib.crc32(b"sla_verdict_days") & 0x7FFFFFFF
DAY = timedelta(days=1)


def policy_key(policy: Policy) -> str | None:
    """What a day's counts depend on of the policy (None: a business clock, never counted ahead)."""
    if policy.clock_name != "calendar":
        return None
    data = {
        "definition": DEFINITION,
        "pauses": sorted(policy.pause_statuses),
        "targets": sla_verdicts.whole_targets(policy),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def applies(filters: Filters, group_by: str | None) -> bool:
    """Whether counted days can answer a read with these filters and grouping."""
    return set(filters) <= set(KEPT) and (group_by is None or group_by in KEPT)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


@dataclass(frozen=True)
class Plan:
    """A range's days taken from their counts, the intervals read live (the rest of the range), and
    the intervals read live to be taken off the counts (the parts of counted days outside it)."""

    counted: list[date] = field(default_factory=list)
    live: list[tuple[datetime, datetime]] = field(default_factory=list)
    outside: list[tuple[datetime, datetime]] = field(default_factory=list)


_USABLE = text(
    "SELECT b.day FROM sla_verdict_day_builds b"
    " WHERE b.org_id = :org_id AND b.day >= :first AND b.day <= :last AND b.policy_key = :key"
    " AND b.counted_at <= :now"
    " AND NOT EXISTS (SELECT 1 FROM sla_verdict_day_marks m WHERE m.org_id = b.org_id AND m.day = b.day)"
    " ORDER BY b.day"
)


def plan(
    session: Session, *, org_id: int, start: datetime, end: datetime, policy: Policy, now: datetime
) -> Plan:
    """Which UTC days of [start, end) have counts that stand at `now`, and the rest as intervals (in
    order, disjoint, adjacent ones joined).

    A day the range holds more than half of is taken from its counts too, less its tickets outside
    the range (`outside`, judged live): a range between local midnights cuts the UTC days at its
    ends, and reading the hours outside it is cheaper than reading those inside."""
    key = policy_key(policy)
    if key is None or start >= end:
        return Plan(live=[(start, end)] if start < end else [])
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    bound = {"org_id": org_id, "first": first, "last": last, "key": key, "now": now}
    usable = session.scalars(_USABLE, bound)
    counted: list[date] = []
    outside: list[tuple[datetime, datetime]] = []
    for day in usable:
        lo, hi = _midnight(day), _midnight(day) + DAY
        if (min(hi, end) - max(lo, start)) * 2 <= DAY:
            continue
        counted.append(day)
        outside += [(lo, start)] if lo < start else []
        outside += [(end, hi)] if end < hi else []
    live: list[tuple[datetime, datetime]] = []
    cursor = start
    for day in counted:
        lo, hi = max(_midnight(day), start), min(_midnight(day) + DAY, end)
        if cursor < lo:
            live.append((cursor, lo))
        cursor = hi
    if cursor < end:
        live.append((cursor, end))
    return Plan(counted=counted, live=live, outside=outside)


def _at_now(column: str) -> str:
    """A counted row's `column` (a COUNTED one) as it stands at :now_us: the turns before it moved
    from pending to breached."""
    metric, verdict = column.rsplit("_", 1)
    if verdict == "achieved":
        return f"d.{column}"
    turned = f"coalesce(width_bucket(CAST(:now_us AS bigint) - 1, d.{metric}_turns), 0)"
    return f"d.{column} {'+' if verdict == 'breached' else '-'} {turned}"


def counted_rows(group_by: str | None, filters: Filters, bound: dict[str, Any]) -> str:
    """SQL of the counted days' (:days) sums per grp at :now_us, with the compliance columns."""
    group = f"d.{group_by}" if group_by else "NULL::text"
    sums = ", ".join(f"sum({_at_now(c)}) AS {c}" for c in sla_verdicts.COUNTED)
    return (
        f"SELECT {group} AS grp, {sums} FROM sla_verdict_days d"
        " WHERE d.org_id = :org_id AND d.day = ANY(CAST(:days AS date[]))"
        f" {filter_sql('d', filters, bound)} GROUP BY 1"
    )


# --- counting ahead ---------------------------------------------------------------------------------

_DUE = text(
    "SELECT day FROM sla_verdict_day_marks WHERE org_id = :org_id AND day < :settled"
    " UNION SELECT day FROM sla_verdict_day_builds WHERE org_id = :org_id AND policy_key <> :key"
    " ORDER BY 1"
)


def due_days(session: Session, *, org_id: int, key: str, now: datetime) -> list[date]:
    """Days old enough to count whose counts are missing, touched by a write, or counted under another
    policy."""
    return list(session.scalars(_DUE, {"org_id": org_id, "settled": _settled(now), "key": key}))


_ORGS = text(
    "SELECT o.id FROM organizations o"
    " WHERE EXISTS (SELECT 1 FROM sla_verdict_day_marks m WHERE m.org_id = o.id)"
    " OR EXISTS (SELECT 1 FROM sla_verdict_day_builds b WHERE b.org_id = o.id) ORDER BY 1"
)
# The marks of days too young to count say only that the day has tickets: one a day is kept.
_COLLAPSE = text(
    "WITH gone AS (DELETE FROM sla_verdict_day_marks WHERE org_id = :org_id AND day >= :settled"
    " RETURNING day)"
    " INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT :org_id, day FROM gone"
)


def due_orgs(session: Session) -> list[int]:
    """Organizations that may have days due or marks to collapse: any with marks, and any with
    counted days (their policy may have changed)."""
    return list(session.scalars(_ORGS))


def _settled(now: datetime) -> date:
    """The first UTC day too young to count at `now`."""
    return now.astimezone(UTC).date() - timedelta(days=SETTLE_DAYS - 1)


# What a day's count writes (its marks are deleted with them).
_COUNTS = ("sla_verdict_days", "sla_verdict_day_builds")


def count_days(session: Session, *, org_id: int, now: datetime) -> int | None:
    """Count the organization's due days at `now`, CHUNK_DAYS per transaction (each committed); the
    days counted, or None when another transaction is counting them, the organization is gone, or its
    policy runs on business hours (its counts are then dropped: no read would take them).

    Each chunk runs REPEATABLE READ: it deletes the marks its snapshot sees and counts the facts of
    the same snapshot, so a write committed later keeps its mark (its day stays live).
    """
    try:
        policy = policy_for(session, org_id)
    except ClockError:  # deleted since it was found due
        return None
    key = policy_key(policy)
    if key is None:
        for table in _COUNTS:
            session.execute(text(f"DELETE FROM {table} WHERE org_id = :o"), {"o": org_id})
        session.commit()
        return None
    # A busy day's writes leave a mark each until the day is old enough to count; no counts of it
    # exist for them to guard, so they are folded into one (the day is still found due later).
    session.execute(_COLLAPSE, {"org_id": org_id, "settled": _settled(now)})
    days = due_days(session, org_id=org_id, key=key, now=now)
    session.commit()
    done = 0
    for first in range(0, len(days), CHUNK_DAYS):
        chunk = days[first : first + CHUNK_DAYS]
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        locked = session.execute(
            text("SELECT pg_try_advisory_xact_lock(:cls, :org)"), {"cls": LOCK_CLASS, "org": org_id}
        ).scalar()
        if not locked:
            session.rollback()
            return None
        _count_chunk(session, org_id=org_id, days=chunk, policy=policy, key=key, now=now)
        session.commit()
        done += len(chunk)
    return done


def _pieces(days: Sequence[date]) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive days (in order) as [lo, hi) instants."""
    out: list[tuple[datetime, datetime]] = []
    for day in days:
        if out and out[-1][1] == _midnight(day):
            out[-1] = (out[-1][0], _midnight(day) + DAY)
        else:
            out.append((_midnight(day), _midnight(day) + DAY))
    return out


def _count_chunk(
    session: Session, *, org_id: int, days: Sequence[date], policy: Policy, key: str, now: datetime
) -> None:
    bound = sla_verdicts.params(policy, org_id=org_id, now=now)
    bound.update(days=list(days), key=key)
    dims = "t.priority, t.channel, t.assigned_to"
    facts = sla_verdicts.tickets_range(
        "ticket_sla_facts f",
        "f.ticket_id",
        f"{sla_verdicts.FACT_COLUMNS}, f.channel, f.assigned_to, f.priority",
        None,
        {},
        bound,
        pieces=_pieces(days),
    )
    verdicts = sla_verdicts.from_facts(
        facts,
        policy,
        keep=f"t.id, CAST(t.created_at AT TIME ZONE 'UTC' AS date) AS day, {dims}",
        turns=True,
    )
    columns = ", ".join(sla_verdicts.COUNTED)
    for table in (*_COUNTS, "sla_verdict_day_marks"):
        session.execute(
            text(f"DELETE FROM {table} WHERE org_id = :org_id AND day = ANY(CAST(:days AS date[]))"), bound
        )
    # Every ticket is counted as it stands; the instants its pending verdicts turn are kept sorted per
    # row. A day holding an odd ticket (see sla_verdicts.from_facts) gets no build: it stays live.
    turns = ", ".join(
        f"array_agg(t.{m}_turn ORDER BY t.{m}_turn) FILTER (WHERE t.{m}_turn IS NOT NULL)"
        for m in sla_verdicts.MEASURED
    )
    session.execute(
        text(
            f"""
            WITH v AS MATERIALIZED ({verdicts}), written AS (
                INSERT INTO sla_verdict_days (org_id, day, priority, channel, assigned_to, {columns},
                                              {", ".join(f"{m}_turns" for m in sla_verdicts.MEASURED)})
                SELECT :org_id, day, priority, channel, assigned_to, {sla_verdicts.counts()}, {turns}
                FROM v t
                GROUP BY day, priority, channel, assigned_to
            )
            INSERT INTO sla_verdict_day_builds (org_id, day, policy_key, counted_at)
            SELECT :org_id, d.day, :key, :now FROM unnest(CAST(:days AS date[])) AS d(day)
            WHERE NOT EXISTS (SELECT 1 FROM v WHERE v.day = d.day AND v.odd)
            """
        ),
        bound,
    )


def forget_orphans(session: Session) -> int:
    """Delete the marks of organizations that no longer exist (their tickets' deletion left them)."""
    return forget_orphan_marks(session, "sla_verdict_day_marks")
