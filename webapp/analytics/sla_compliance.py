"""SLA compliance over the tickets created in a range, under a policy, in SQL.

Each ticket is held to its current priority's targets. first_reply is achieved when the first
response (first_response_at, or an earlier public agent reply) came within the target on the
policy's clock, breached when it came later or has not come and the target has passed by `now`, and
pending otherwise. resolution counts only the time the ticket's status history spends in unsolved
statuses that are not pause statuses, up to `now` (summed from the ticket's backlog steps, which
tickets.history derives from that history): breached once that exceeds the target, achieved when the
ticket is solved within it, pending otherwise (running or paused). Compliance is achieved /
(achieved + breached), per target and over all of them. On a business clock each duration is the
difference of business_open_seconds (migration 0006) at its two ends, one index lookup each.

next_reply is counted by the per-ticket evaluation itself (next_reply below): a ticket counts once
it has a pair (a customer reply after an agent reply), which needs its replies. Definitions as in
evaluation.py, which answers the same per ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from webapp.analytics.sql import filter_sql
from webapp.clocks.evaluation import evaluate
from webapp.clocks.policy import UNSOLVED_STATUSES, Clock, Policy, clock_for, policy_for
from webapp.clocks.tracking import load
from webapp.core.filters import Filters
from webapp.core.vocabulary import PRIORITIES, RESOLVED_STATUSES
from webapp.models import Ticket

GROUPS = ("assigned_to", "priority", "channel")
MEASURED = ("first_reply", "resolution")


def _position(clock: str, instant: str) -> str:
    """SQL for where `instant` lies on the clock, in microseconds (exact: whole microseconds on the
    calendar, as bigint, which sum and compare several times faster than numeric seconds)."""
    if clock == "calendar":
        return f"CAST(round(date_part('epoch', {instant}) * 1000000) AS bigint)"
    return f"(business_open_seconds(:schedule_id, {instant}) * 1000000)"


# Target hours to the positions' microseconds.
_HOUR_US = 3_600_000_000


def _micros(hours: float | None) -> Decimal | None:
    return None if hours is None else Decimal(str(hours)) * _HOUR_US


def _ratio(achieved: int, breached: int, pending: int) -> dict[str, Any]:
    judged = achieved + breached
    return {
        "achieved": achieved,
        "breached": breached,
        "pending": pending,
        "compliance": achieved / judged if judged else None,
    }


def compliance(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    policy: Policy,
    now: datetime,
    group_by: str | None = None,
) -> list[dict[str, Any]]:
    """Per group (one row when `group_by` is None): achieved, breached, pending and compliance of each
    measured target and of all of them together."""
    if group_by is not None and group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    params: dict[str, Any] = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "now": now,
        "schedule_id": policy.schedule_id,
        "priorities": list(PRIORITIES),
        # Targets in microseconds, as the positions are (exact: hours as decimals, not floats).
        "first_reply": [_micros(policy.target(p, "first_reply")) for p in PRIORITIES],
        "resolution": [_micros(policy.target(p, "resolution")) for p in PRIORITIES],
        "running": [s for s in UNSOLVED_STATUSES if s not in policy.pause_statuses],
        "solved": list(RESOLVED_STATUSES),
    }
    at = _position(policy.clock_name, "{}")
    group = f"t.{group_by}" if group_by else "NULL::text"
    counts = []
    for metric, verdicts in (
        (
            "first_reply",
            {
                "achieved": "t.answered_at IS NOT NULL AND fr_elapsed <= t.first_reply",
                "breached": "fr_elapsed > t.first_reply",
                "pending": "t.answered_at IS NULL AND fr_elapsed <= t.first_reply",
            },
        ),
        (
            "resolution",
            {
                "achieved": "t.status = ANY(CAST(:solved AS text[])) AND res_elapsed <= t.resolution",
                "breached": "res_elapsed > t.resolution",
                "pending": "t.status <> ALL(CAST(:solved AS text[])) AND res_elapsed <= t.resolution",
            },
        ),
    ):
        counts += [
            f"count(*) FILTER (WHERE t.{metric} IS NOT NULL AND {condition}) AS {metric}_{verdict}"
            for verdict, condition in verdicts.items()
        ]
    sql = text(
        f"""
        WITH t AS (
            -- The first reply reached the customer at first_response_at or at the first public
            -- agent reply, whichever came first (a back-filled reply can be earlier than the
            -- first_response_at an earlier-written reply set).
            SELECT t.id, t.status, t.created_at, {group} AS grp,
                   least(t.first_response_at, (
                       SELECT r.at FROM ticket_replies r
                       WHERE r.ticket_id = t.id AND r.author = 'agent' AND r.public
                       ORDER BY r.at LIMIT 1)) AS answered_at,
                   s.first_reply, s.resolution
            FROM tickets t
            JOIN unnest(CAST(:priorities AS text[]), CAST(:first_reply AS numeric[]),
                        CAST(:resolution AS numeric[])) AS s(priority, first_reply, resolution)
              ON s.priority = t.priority
            WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end
            {filter_sql("t", filters, params)}
        ), steps AS (
            -- The ticket's backlog steps (tickets.history): +1 entering an unsolved status, -1
            -- leaving it, each with that status. Over the running statuses, the time elapsed is
            -- the sum of -step x position of each step, plus the position of `now` (or of the
            -- step that opened it, if later) for the span still open: one scan of the steps since
            -- the range's start (a ticket's events never come before its creation), no history
            -- rebuilt per ticket.
            SELECT e.ticket_id,
                   sum(-CAST(e.value AS bigint) * {at.format("e.occurred_at")}) AS closed,
                   sum(e.value) AS open,
                   max(e.occurred_at) FILTER (WHERE e.value > 0) AS entered
            FROM ticket_events e
            WHERE e.org_id = :org_id AND e.event_type = 'backlog' AND e.occurred_at >= :start
              AND e.status = ANY(CAST(:running AS text[]))
              AND e.ticket_id IN (SELECT id FROM t)
            GROUP BY e.ticket_id
        )
        SELECT grp, {", ".join(counts)}
        FROM (
            SELECT t.*,
                   coalesce(s.closed, 0) + CASE WHEN s.open > 0
                       THEN {at.format("greatest(:now, s.entered)")} ELSE 0 END AS res_elapsed,
                   {at.format("greatest(coalesce(t.answered_at, :now), t.created_at)")}
                   - {at.format("t.created_at")} AS fr_elapsed
            FROM t LEFT JOIN steps s ON s.ticket_id = t.id
        ) t
        GROUP BY grp ORDER BY grp NULLS FIRST
        """
    )
    rows = []
    for row in session.execute(sql, params):
        values = row._mapping
        out: dict[str, Any] = {"group": {group_by: row.grp} if group_by else {}}
        totals = [0, 0, 0]
        for metric in MEASURED:
            triple = [int(values[f"{metric}_{v}"]) for v in ("achieved", "breached", "pending")]
            out[metric] = _ratio(*triple)
            totals = [a + b for a, b in zip(totals, triple, strict=True)]
        out["all"] = _ratio(*totals)
        rows.append(out)
    if not rows and group_by is None:
        zero = _ratio(0, 0, 0)
        return [{"group": {}, **{metric: dict(zero) for metric in MEASURED}, "all": dict(zero)}]
    return rows


# Tickets evaluated per round trip when next_reply is counted ticket by ticket.
NEXT_REPLY_CHUNK = 2000


def next_reply(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    policy: Policy,
    clock: Clock,
    now: datetime,
    fields: Sequence[str] = (),
) -> dict[tuple[str | None, ...], list[int]]:
    """Per combination of the tickets' `fields` (one key, (), with none): [achieved, breached, pending]
    of next_reply over the tickets created in the range that have at least one pair, each ticket as
    clocks.evaluation judges it (pending: a pair still runs).

    Counted ticket by ticket through the one evaluation GET /tickets/{id}/sla answers with; only
    tickets of priorities whose next_reply target is set are read at all, each once.
    """
    if any(field not in GROUPS for field in fields):
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    measured = [p for p in PRIORITIES if policy.target(p, "next_reply") is not None]
    counts: dict[tuple[str | None, ...], list[int]] = {}
    if not measured:
        return counts
    params: dict[str, Any] = {"org_id": org_id, "start": start, "end": end, "priorities": measured}
    where = (
        "t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
        " AND t.priority = ANY(CAST(:priorities AS text[]))" + filter_sql("t", filters, params)
    )
    ids = list(session.scalars(text(f"SELECT t.id FROM tickets t WHERE {where} ORDER BY t.id"), params))
    for first in range(0, len(ids), NEXT_REPLY_CHUNK):
        tickets = list(
            session.scalars(select(Ticket).where(Ticket.id.in_(ids[first : first + NEXT_REPLY_CHUNK])))
        )
        for loaded in load(session, tickets).values():
            runs = [r for r in evaluate(loaded.facts, policy, clock, now).runs if r.metric == "next_reply"]
            if not runs:
                continue
            key = tuple(getattr(loaded.ticket, field) for field in fields)
            triple = counts.setdefault(key, [0, 0, 0])
            if any(r.passed_at is not None for r in runs):
                triple[1] += 1
            elif any(r.running for r in runs):
                triple[2] += 1
            else:
                triple[0] += 1
    return counts


def report(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    now: datetime,
    group_by: str | None = None,
) -> dict[str, Any]:
    """SLA compliance under the policy in force: overall, by priority and (with `group_by`) per group,
    for first reply, resolution and next reply, with the policy's clock and targets.

    Each outcome has achieved (and `met`, its first name), breached, pending and compliance; the
    first contract's names stay: first_response is first_reply.
    """
    policy = policy_for(session, org_id)
    clock = clock_for(session, org_id, policy)
    window = {"org_id": org_id, "start": start, "end": end, "filters": filters, "policy": policy, "now": now}

    def outcomes(row: dict[str, Any] | None, replies: list[int] | None) -> dict[str, Any]:
        out = {}
        for name, metric in (("first_response", "first_reply"), ("resolution", "resolution")):
            part = row[metric] if row else _ratio(0, 0, 0)
            out[name] = {"met": part["achieved"], **part}
        out["next_reply"] = {"met": (replies or [0])[0], **_ratio(*(replies or [0, 0, 0]))}
        return out

    # Every ticket has one priority: the whole is the sum of the priorities' rows, so each statement
    # and each ticket's next_reply evaluation runs once.
    by_priority_rows = {
        row["group"]["priority"]: row for row in compliance(session, group_by="priority", **window)
    }
    fields = ("priority",) if group_by in (None, "priority") else ("priority", group_by)
    replies = next_reply(session, clock=clock, fields=fields, **window)
    replies_by_priority = _merged(replies, 0)
    answer: dict[str, Any] = {
        "policy_clock": policy.clock_name,
        "schedule_id": policy.schedule_id,
        "overall": outcomes(_summed(list(by_priority_rows.values())), _merged(replies, None).get(None)),
        "by_priority": {p: outcomes(by_priority_rows.get(p), replies_by_priority.get(p)) for p in PRIORITIES},
    }
    answer["next_reply"] = answer["overall"]["next_reply"]
    if group_by is not None:
        rows = (
            list(by_priority_rows.values())
            if group_by == "priority"
            else compliance(session, group_by=group_by, **window)
        )
        grouped = _merged(replies, fields.index(group_by))
        answer["groups"] = [
            {"group": row["group"], **outcomes(row, grouped.get(row["group"][group_by]))} for row in rows
        ]
    return answer


def _summed(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row of compliance counting what `rows` count together."""
    out: dict[str, Any] = {"group": {}}
    for part in (*MEASURED, "all"):
        triple = [sum(row[part][v] for row in rows) for v in ("achieved", "breached", "pending")]
        out[part] = _ratio(*triple)
    return out


def _merged(
    counts: dict[tuple[str | None, ...], list[int]], position: int | None
) -> dict[str | None, list[int]]:
    """next_reply's counts by the field at `position` of their keys (None: all of them together)."""
    out: dict[str | None, list[int]] = {}
    for key, triple in counts.items():
        total = out.setdefault(key[position] if position is not None else None, [0, 0, 0])
        for i, n in enumerate(triple):
            total[i] += n
    return out
