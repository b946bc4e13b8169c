"""The agents report from agent_rollups: whole local days from the rows, the range's edges raw.

A range [start, end) splits at the organization's local midnights (the zone the rows were built in)
into a head [start, D0), whole days [D0, D1) and a tail [D1, end). The whole days are read from the
rows, months where a whole month fits and days elsewhere, keeping the solves whose next solve is
at or after `end` (agent_rollups: next_day after the tail's date, or on it when there is no tail).
The head and tail, and the solves of whole days whose next solve falls on the tail's day at or after
`end`, are measured from raw events by the same SQL that builds the rows. Counts are exact either
way.

Percentiles follow the aggregations' rule: exact (support.agents, over raw events) unless the
solves measured outnumber `approximate_above`, then from the merged sketches (within sketch.ALPHA).
Filters, a business clock, rows built for other SLA targets (or never built) and ranges without a
whole local day are answered by support.agents: there are no rows per dimension or schedule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import provenance, sketch, support
from webapp.analytics.agent_rollups import COUNTERS, DAY, MONTH, measures_sql, params_of, state_of
from webapp.analytics.sql import binary_rows
from webapp.clocks.policy import Policy
from webapp.core.filters import Filters


@dataclass(frozen=True)
class Split:
    """Where a range meets the rows: whole local dates [d0, d1), their instants, and the tail."""

    d0: date
    d1: date
    d0_at: datetime
    d1_at: datetime
    tail_end: datetime  # the end of the tail's local day when there is a tail, else d1_at
    partial: bool  # whether the range ends after d1_at (a tail)


def _midnight(day: date, tz: ZoneInfo) -> datetime | None:
    """The instant the local date `day` begins; None when midnight is skipped there (a DST gap)."""
    moment = datetime.combine(day, time(), tz)
    back = moment.astimezone(UTC).astimezone(tz)
    return moment.astimezone(UTC) if (back.date(), back.time()) == (day, time()) else None


def split(start: datetime, end: datetime, tz: ZoneInfo) -> Split | None:
    """The range's whole local days in `tz`; None when it holds none the rows can answer."""
    d0 = start.astimezone(tz).date()
    d0_at = _midnight(d0, tz)
    if d0_at is not None and d0_at < start:
        d0 += timedelta(days=1)
        d0_at = _midnight(d0, tz)
    d1 = end.astimezone(tz).date()
    d1_at = _midnight(d1, tz)
    if d0_at is None or d1_at is None or d0 >= d1:
        return None
    partial = end > d1_at
    tail_end = _midnight(d1 + timedelta(days=1), tz) if partial else d1_at
    if tail_end is None:
        return None
    return Split(d0, d1, d0_at, d1_at, tail_end, partial)


def _months(d0: date, d1: date) -> tuple[date, date]:
    """[m0, m1): the whole months inside [d0, d1) (m0 == m1 == d1 when none)."""
    m0 = d0 if d0.day == 1 else (d0.replace(day=28) + timedelta(days=4)).replace(day=1)
    m1 = d1.replace(day=1)
    return (m0, m1) if m0 < m1 else (d1, d1)


ROWS_WHERE = (
    " FROM agent_rollups WHERE org_id = :org_id AND ((grain = :day AND bucket >= :d0 AND bucket < :m0)"
    " OR (grain = :month AND bucket >= :m0 AND bucket < :m1)"
    " OR (grain = :day AND bucket >= :m1 AND bucket < :d1))"
    " AND (next_day > :d1 OR (next_day = :d1 AND NOT :partial))"
)

EDGES = (
    " SELECT agent, solved, one_touch, reopened, achieved, ratings, good, first_h, resolution_h"
    " FROM measures m WHERE (m.solved = 1 AND m.at >= :start AND m.at < :end"
    " AND (m.next_at IS NULL OR m.next_at >= :end)"
    " AND (m.at < :d0_at OR m.at >= :d1_at OR (:partial AND m.next_day = :d1)))"
    " OR (m.ratings = 1 AND ((m.at >= :start AND m.at < :d0_at) OR (m.at >= :d1_at AND m.at < :end)))"
)
# The tickets solved in the head or on the tail's day: their solves (all of them, for the next one).
EDGE_TICKETS = (
    "SELECT DISTINCT ticket_id FROM ticket_events WHERE org_id = :org_id AND event_type = 'solved'"
    " AND ((occurred_at >= :start AND occurred_at < :d0_at)"
    " OR (occurred_at >= :d1_at AND occurred_at < :tail_end))"
)
# The solves of those tickets, looked up ticket by ticket (an index lookup each). As one
# `ticket_id = ANY(array)` scan, the planner guessed millions of rows for 27,000 tickets at 10M and
# read the whole table in parallel (12 s); OFFSET 0 keeps it from intersecting each lookup with the
# organization's whole (org_id, event_type) index range.
EDGE_EVENTS = (
    "(SELECT x.* FROM unnest(CAST(:edge_tickets AS bigint[])) AS k(id) CROSS JOIN LATERAL"
    " (SELECT * FROM ticket_events WHERE ticket_id = k.id AND event_type = 'solved' OFFSET 0) x)"
)
RATING_SCOPE = (
    "AND ((e.occurred_at >= :start AND e.occurred_at < :d0_at)"
    " OR (e.occurred_at >= :d1_at AND e.occurred_at < :end))"
)


def _edges(session: Session, params: dict[str, Any], cut: Split, start: datetime) -> Any:
    """The raw part of the answer: measures of the head, the tail and whole-day solves whose next
    solve is on the tail's day at or after the end. None to read for a range of whole days."""
    if cut.d0_at == start and not cut.partial:
        return []
    tickets = list(session.scalars(text(EDGE_TICKETS), params))
    provenance.note_raw()
    edges = f"WITH {measures_sql('', RATING_SCOPE, EDGE_EVENTS)}{EDGES}"
    return session.execute(text(edges), {**params, "edge_tickets": tickets})


def agents(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    targets: dict[str, dict[str, float]],
    policy: Policy,
    now: datetime,
    min_tickets: int,
    schedule_id: int | None = None,
    approximate_above: int | None = None,
) -> list[dict[str, Any]]:
    """support.agents' answer, from the rows where they can give it (see the module's doc), with
    each agent's SLA compliance under `policy` at `now` (support.agents_sla, from the solved tickets'
    verdicts, which depend on the policy in force and on `now`). `targets`: the first contract's
    targets the rows were built for.

    Where the rows answer (more solves than `approximate_above`, so the medians come from sketches
    too) and the organization has set no policy of its own, the compliance is the rows' count
    instead: each solve judged at its solve against those targets on the calendar, a first reply
    never given counting as breached, the first response being first_response_at alone. It differs
    from the verdicts for tickets still within their first-reply target, tickets reopened or
    reprioritized since, and back-filled public agent replies earlier than first_response_at;
    judging a quarter of solves ticket by ticket at 10M tickets takes tens of seconds.
    """
    rows, from_rows = _agents(
        session, org_id, start, end, filters, targets, min_tickets, schedule_id, approximate_above
    )
    if rows and not (from_rows and policy.is_default):
        window = {"org_id": org_id, "start": start, "end": end, "filters": filters}
        compliance = support.agents_sla(session, policy=policy, now=now, **window)
        for row in rows:
            row["sla_compliance_pct"] = compliance.get(row["agent"])
    return rows


def _agents(
    session: Session,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    targets: dict[str, dict[str, float]],
    min_tickets: int,
    schedule_id: int | None,
    approximate_above: int | None,
) -> tuple[list[dict[str, Any]], bool]:
    """The report's rows, and whether they came from the agent rollups."""

    def raw() -> tuple[list[dict[str, Any]], bool]:
        provenance.note_raw()
        return support.agents(
            session,
            org_id=org_id,
            start=start,
            end=end,
            filters=filters,
            min_tickets=min_tickets,
            schedule_id=schedule_id,
        ), False

    if schedule_id is not None or any(filters.values()) or approximate_above is None:
        return raw()
    state = state_of(session, org_id)
    if state is None or state.targets != targets:
        return raw()
    cut = split(start, end, ZoneInfo(state.timezone))
    if cut is None:
        return raw()
    m0, m1 = _months(cut.d0, cut.d1)
    params = {
        **params_of(org_id, state),
        **vars(cut),
        "start": start,
        "end": end,
        "m0": m0,
        "m1": m1,
        "day": DAY,
        "month": MONTH,
    }
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    # Counters and sketches in one pass over the rows: the sketches of agents with fewer solves than
    # min_tickets come along, which costs less than reading the rows again for the others.
    sums = ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)
    blobs: dict[str, tuple[bytes | None, bytes | None]] = {}
    read = (
        f"SELECT agent, {sums}, string_agg(first_sketch, ''::bytea) AS first,"
        f" string_agg(resolution_sketch, ''::bytea) AS resolution{ROWS_WHERE} GROUP BY agent"
    )
    for row in binary_rows(session, read, params):
        totals[row.agent].update({c: int(getattr(row, c)) for c in COUNTERS})
        blobs[row.agent] = (row.first, row.resolution)
    edge_values: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for row in _edges(session, params, cut, start):
        for c in COUNTERS:
            totals[row.agent][c] += int(row._mapping[c])
        if row.first_h is not None:
            edge_values[row.agent][0].append(float(row.first_h))
        if row.resolution_h is not None:
            edge_values[row.agent][1].append(float(row.resolution_h))
    if sum(t["solved"] for t in totals.values()) <= approximate_above:
        return raw()  # few enough measurements for exact medians, which only raw events give
    provenance.note_rollup()
    provenance.note_approximate()
    chosen = sorted(
        (a for a, t in totals.items() if t["solved"] >= min_tickets), key=lambda a: (-totals[a]["solved"], a)
    )
    out = []

    def groups(side: int) -> list[list[bytes | None]]:
        values = [edge_values[agent][side] for agent in chosen]
        return [
            [blobs.get(agent, (None, None))[side], sketch.from_values(v) if v else None]
            for agent, v in zip(chosen, values, strict=True)
        ]

    first_p50 = sketch.quantiles_of_groups(groups(0), 0.5)
    resolution_p50 = sketch.quantiles_of_groups(groups(1), 0.5)
    for i, agent in enumerate(chosen):
        t = totals[agent]
        solved = t["solved"]
        out.append(
            {
                "agent": agent,
                "solved": solved,
                "first_reply_p50": first_p50[i],
                "resolution_p50": resolution_p50[i],
                "sla_compliance_pct": 100 * t["achieved"] / (2 * solved),
                "csat_pct": 100 * t["good"] / t["ratings"] if t["ratings"] else None,
                "one_touch_pct": 100 * t["one_touch"] / solved,
                "reopen_rate": 100 * t["reopened"] / solved,
            }
        )
    return out, True
