"""Time in status and the agents report, over the solves of a range.

Both read the solved events tickets.history derives (one per solve, with the dimensions of the
ticket), so filters apply as they do to the `solved` metric. Durations are measured by one SQL
expression per clock (`_hours`): the calendar's, or a schedule's open time between two instants
(analytics.clock.business_hours_sql).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sla_verdicts
from webapp.analytics.clock import Clock, bind, business_hours_sql
from webapp.analytics.sql import filter_sql
from webapp.clocks.policy import Policy
from webapp.core.filters import Filters
from webapp.core.vocabulary import UNSOLVED_STATUSES

PERCENTILES = (0.5, 0.9)


def _hours(start: str, end: str, schedule_id: int | None) -> str:
    """SQL for the hours between two instants: calendar time, or the schedule :schedule_id's open time."""
    if schedule_id is None:
        return f"(extract(epoch FROM ({end}) - ({start})) / 3600.0)"
    # An instant that is not there (no first response) has no duration on any clock.
    return f"(CASE WHEN ({end}) IS NULL THEN NULL ELSE {business_hours_sql(start, end)} END)"


def time_in_status(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    schedule_id: int | None = None,
) -> list[dict[str, Any]]:
    """Per unsolved status, over the tickets whose last solve is in [start, end): the time each spent
    in it from creation to that solve (tickets that spent any calendar time in it, total, average,
    p50, p90 in hours on the clock)."""
    params: dict[str, Any] = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "schedule_id": schedule_id,
        "statuses": list(UNSOLVED_STATUSES),
        "fractions": list(PERCENTILES),
    }
    if schedule_id is not None:  # the schedule's spans the business SQL reads
        bind(session, Clock(schedule_id), params, start=start, end=end)
    until = "least(coalesce(h.next_at, s.solved_at), s.solved_at)"
    span = _hours("h.at", until, schedule_id)
    # Which tickets spent time in a status is a matter of calendar time; the clock only measures it
    # (on a business clock, a weekend spent pending counts the ticket, with 0 hours).
    spent = f"h.at < {until}"
    sql = text(
        "WITH solves AS (SELECT e.ticket_id, e.occurred_at AS solved_at FROM ticket_events e"
        " WHERE e.org_id = :org_id AND e.event_type = 'solved'"
        " AND e.occurred_at >= :start AND e.occurred_at < :end"
        + filter_sql("e", filters, params)
        + " AND NOT EXISTS (SELECT 1 FROM ticket_events later WHERE later.ticket_id = e.ticket_id"
        " AND later.event_type = 'solved' AND later.occurred_at > e.occurred_at)),"
        " spans AS (SELECT s.ticket_id, h.status, sum(" + span + ") AS hours,"
        f" bool_or({spent}) AS spent"
        " FROM solves s CROSS JOIN LATERAL (SELECT c.status, c.at,"
        " lead(c.at) OVER (ORDER BY c.at, c.id) AS next_at FROM ticket_status_changes c"
        " WHERE c.ticket_id = s.ticket_id) h"
        " WHERE h.at < s.solved_at AND h.status = ANY(CAST(:statuses AS text[]))"
        " GROUP BY s.ticket_id, h.status)"
        " SELECT status, count(*) AS tickets, sum(hours) AS total,"
        " percentile_cont(CAST(:fractions AS double precision[])) WITHIN GROUP (ORDER BY hours) AS pct"
        " FROM spans WHERE spent GROUP BY status"
    )
    found = {row.status: row for row in session.execute(sql, params)}
    out = []
    for status in UNSOLVED_STATUSES:
        row = found.get(status)
        tickets = int(row.tickets) if row is not None else 0
        total = float(row.total) if row is not None else 0.0
        pct = [float(v) for v in row.pct] if row is not None else [None, None]
        out.append(
            {
                "status": status,
                "tickets": tickets,
                "total_hours": total,
                "avg_hours": total / tickets if tickets else None,
                "p50": pct[0],
                "p90": pct[1],
            }
        )
    return out


def _solved_events(filters: Filters, params: dict[str, Any]) -> str:
    """FROM and WHERE of the assigned solves in [:start, :end) passing `filters`: the solves both
    `agents` and `agents_sla` count."""
    return (
        "FROM ticket_events e WHERE e.org_id = :org_id AND e.event_type = 'solved'"
        " AND e.assigned_to IS NOT NULL AND e.occurred_at >= :start AND e.occurred_at < :end"
        + filter_sql("e", filters, params)
    )


def agents(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    min_tickets: int,
    schedule_id: int | None = None,
) -> list[dict[str, Any]]:
    """Per assignee with at least `min_tickets` solved in [start, end): solved, first reply and
    resolution p50 (hours), csat, one-touch and reopen rate (percentages), most solved first; the
    SLA compliance is agents_sla's (None here).

    solved counts the tickets solved in the range (once each, at their last solve in it); their
    first reply is creation to first response, their resolution creation to that solve. csat is
    over the ratings given in the range to the assignee's tickets.
    """
    params: dict[str, Any] = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "schedule_id": schedule_id,
        "min_tickets": min_tickets,
    }
    if schedule_id is not None:  # the schedule's spans the business SQL reads
        bind(session, Clock(schedule_id), params, start=start, end=end)
    first = _hours("t.created_at", "t.first_response_at", schedule_id)
    resolution = _hours("t.created_at", "s.solved_at", schedule_id)
    sql = text(
        "WITH solves AS (SELECT e.ticket_id, e.assigned_to AS agent, max(e.occurred_at) AS solved_at,"
        f" bool_and(e.value > 0) AS one_touch {_solved_events(filters, params)} GROUP BY 1, 2),"
        f" measured AS (SELECT s.agent, s.one_touch, t.reopen_count > 0 AS reopened, {first} AS first_h,"
        f" {resolution} AS resolution_h"
        " FROM solves s JOIN tickets t ON t.id = s.ticket_id),"
        " per_agent AS (SELECT agent, count(*) AS solved,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY first_h) AS first_reply_p50,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_h) AS resolution_p50,"
        " count(*) FILTER (WHERE one_touch) AS one_touch, count(*) FILTER (WHERE reopened) AS reopened"
        " FROM measured GROUP BY agent HAVING count(*) >= :min_tickets),"
        " rated AS (SELECT e.assigned_to AS agent, count(*) AS ratings, sum(e.value) / 100 AS good"
        " FROM ticket_events e WHERE e.org_id = :org_id AND e.event_type = 'rated'"
        " AND e.occurred_at >= :start AND e.occurred_at < :end"
        " AND e.assigned_to IN (SELECT agent FROM per_agent)"
        + filter_sql("e", filters, params)
        + " GROUP BY 1)"
        " SELECT p.*, r.ratings, r.good FROM per_agent p LEFT JOIN rated r USING (agent)"
        " ORDER BY p.solved DESC, p.agent"
    )
    out = []
    for row in session.execute(sql, params):
        solved = int(row.solved)
        out.append(
            {
                "agent": row.agent,
                "solved": solved,
                "first_reply_p50": None if row.first_reply_p50 is None else float(row.first_reply_p50),
                "resolution_p50": None if row.resolution_p50 is None else float(row.resolution_p50),
                "sla_compliance_pct": None,
                "csat_pct": 100 * float(row.good) / int(row.ratings) if row.ratings else None,
                "one_touch_pct": 100 * int(row.one_touch) / solved,
                "reopen_rate": 100 * int(row.reopened) / solved,
            }
        )
    return out


def agents_sla(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    policy: Policy,
    now: datetime,
) -> dict[str, float | None]:
    """Per assignee, the SLA compliance (0-100) of the tickets solved in [start, end) (the solves
    `agents` counts): each ticket judged at `now` under `policy` (its clock, pauses and the targets of
    the ticket's priority) exactly as GET /analytics/performance judges it (sla_verdicts), over its
    first-reply and resolution targets; achieved / (achieved + breached), pending left out (None when
    nothing is judged yet)."""
    params: dict[str, Any] = sla_verdicts.params(policy, org_id=org_id, now=now)
    params.update(start=start, end=end)
    solves = f"SELECT e.ticket_id, e.assigned_to AS agent {_solved_events(filters, params)} GROUP BY 1, 2"
    columns = (
        "{a}.status, {a}.created_at, {a}.first_response_at, s.agent AS grp,"
        " g.first_reply AS first_reply_target, g.resolution AS resolution_target,"
        " g.first_reply_span, g.resolution_us"
    )
    if policy.clock_name == "calendar":
        facts = (
            f"SELECT f.ticket_id AS id, {columns.format(a='f')}, {sla_verdicts.FACT_COLUMNS}"
            f" FROM ({solves}) s JOIN ticket_sla_facts f ON f.ticket_id = s.ticket_id"
            # The organization's facts of tickets created before the range ends (its index): no
            # other organization's rows are read.
            " AND f.org_id = :org_id AND f.created_at < :end"
            f" JOIN ({sla_verdicts.TARGETS}) g ON g.priority = f.priority"
        )
        verdicts = sla_verdicts.from_facts(facts, policy)
    else:
        tickets = (
            f"SELECT t.id, {columns.format(a='t')} FROM ({solves}) s JOIN tickets t ON t.id = s.ticket_id"
            f" JOIN ({sla_verdicts.TARGETS}) g ON g.priority = t.priority"
        )
        # The steps from the earliest creation among them (`t` is from_steps' own CTE of `tickets`).
        verdicts = sla_verdicts.from_steps(tickets, policy, since="(SELECT min(t.created_at) FROM t)")
    sql = text(f"SELECT grp, {sla_verdicts.counts()} FROM ({verdicts} OFFSET 0) t GROUP BY grp")
    out: dict[str, float | None] = {}
    for row in session.execute(sql, params):
        values = row._mapping
        achieved = sum(int(values[f"{m}_achieved"]) for m in sla_verdicts.MEASURED)
        breached = sum(int(values[f"{m}_breached"]) for m in sla_verdicts.MEASURED)
        out[row.grp] = 100 * achieved / (achieved + breached) if achieved + breached else None
    return out
