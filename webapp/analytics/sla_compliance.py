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

import contextlib
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from webapp.analytics.sql import filter_sql, parallel_costs
from webapp.clocks.evaluation import evaluate
from webapp.clocks.policy import UNSOLVED_STATUSES, Clock, Policy, clock_for, policy_for
from webapp.clocks.tracking import load
from webapp.core.filters import Filters
from webapp.core.timeutil import epoch_micros
from webapp.core.vocabulary import PRIORITIES, RESOLVED_STATUSES
from webapp.models import Ticket

GROUPS = ("assigned_to", "priority", "channel")
MEASURED = ("first_reply", "resolution")
# What a facts row holds beside its ticket's own columns: the first reply and the backlog steps' sums.
FACT_COLUMNS = ", ".join(
    [
        "f.first_agent_reply_at",
        "f.entered_us",
        *(f"f.{s}_{n}" for s in UNSOLVED_STATUSES for n in ("us", "open")),
    ]
)
# A ticket's verdict on a target, as the SQL codes it.
VERDICTS = {"achieved": 0, "breached": 1, "pending": 2}


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


def _whole(hours: float | None) -> int | None:
    """The target's whole microseconds (None: not measured)."""
    micros = _micros(hours)
    return None if micros is None else int(micros)


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
    from_steps: bool = False,
) -> list[dict[str, Any]]:
    """Per group (one row when `group_by` is None): achieved, breached, pending and compliance of each
    measured target and of all of them together.

    On the calendar clock each ticket's elapsed times come from its ticket_sla_facts row, which also
    holds the ticket's columns read here (one scan of the range's facts, no join); on a business
    clock, or with `from_steps`, from its backlog steps and replies themselves (the two agree: tests
    hold them to it).
    """
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
        # The same in whole microseconds (an elapsed time of whole microseconds is within a target
        # exactly when it is within the target's whole microseconds): the calendar's facts compare
        # as bigint and intervals, several times faster than as numeric.
        "first_reply_us": [_whole(policy.target(p, "first_reply")) for p in PRIORITIES],
        "resolution_us": [_whole(policy.target(p, "resolution")) for p in PRIORITIES],
        "running": [s for s in UNSOLVED_STATUSES if s not in policy.pause_statuses],
        "solved": list(RESOLVED_STATUSES),
    }
    counts = [
        f"count(*) FILTER (WHERE t.{metric} = {code}) AS {metric}_{verdict}"
        for metric in MEASURED
        for verdict, code in VERDICTS.items()
    ]
    parallel = policy.clock_name == "calendar" and not from_steps
    if parallel:
        facts = _range("ticket_sla_facts f", "f.ticket_id", FACT_COLUMNS, group_by, filters, params)
        source = _from_facts(facts, policy)
        params["now_us"] = epoch_micros(now)
    else:
        source = _from_steps(_range("tickets t", "t.id", "", group_by, filters, params), policy)
    columns = ", ".join(counts)
    # OFFSET 0 keeps each ticket's verdicts a column computed once, not an expression per count.
    sql = text(f"SELECT grp, {columns} FROM ({source} OFFSET 0) t GROUP BY grp ORDER BY grp NULLS FIRST")
    with parallel_costs(session) if parallel else contextlib.nullcontext():
        result = session.execute(sql, params).all()
    rows = []
    for row in result:
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


def _range(
    table: str, ticket_id: str, extra: str, group_by: str | None, filters: Filters, params: dict[str, Any]
) -> str:
    """The rows of `table` (tickets, or the facts that hold the same columns) of the tickets created
    in the range and passing the filters: id, status, created_at, first_response_at, grp, their
    priority's targets, and the `extra` columns."""
    alias = table.split()[1]
    group = f"{alias}.{group_by}" if group_by else "NULL::text"
    return f"""
        SELECT {ticket_id} AS id, {alias}.status, {alias}.created_at, {alias}.first_response_at,
               {group} AS grp, s.first_reply AS first_reply_target, s.resolution AS resolution_target,
               s.first_reply_span, s.resolution_us{", " + extra if extra else ""}
        FROM {table}
        JOIN (
            SELECT s.*, s.first_reply_us * interval '1 microsecond' AS first_reply_span
            FROM unnest(CAST(:priorities AS text[]), CAST(:first_reply AS numeric[]),
                        CAST(:resolution AS numeric[]), CAST(:first_reply_us AS bigint[]),
                        CAST(:resolution_us AS bigint[]))
                 AS s(priority, first_reply, resolution, first_reply_us, resolution_us)
        ) s ON s.priority = {alias}.priority
        WHERE {alias}.org_id = :org_id AND {alias}.created_at >= :start AND {alias}.created_at < :end
        {filter_sql(alias, filters, params)}
    """


def _from_steps(tickets: str, policy: Policy) -> str:
    """The range's tickets with fr_elapsed and res_elapsed on the policy's clock, summed from their
    backlog steps and replies."""
    at = _position(policy.clock_name, "{}")
    verdicts = _verdicts(
        "t.first_reply_target",
        "fr_elapsed > t.first_reply_target",
        "t.resolution_target",
        "res_elapsed > t.resolution_target",
    )
    return f"""
        WITH t AS (
            -- The first reply reached the customer at first_response_at or at the first public
            -- agent reply, whichever came first (a back-filled reply can be earlier than the
            -- first_response_at an earlier-written reply set).
            SELECT t.*, least(t.first_response_at, (
                       SELECT r.at FROM ticket_replies r
                       WHERE r.ticket_id = t.id AND r.author = 'agent' AND r.public
                       ORDER BY r.at LIMIT 1)) AS answered_at
            FROM ({tickets}) t
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
        SELECT grp, {verdicts}
        FROM (
            SELECT t.*,
                   coalesce(s.closed, 0) + CASE WHEN s.open > 0
                       THEN {at.format("greatest(:now, s.entered)")} ELSE 0 END AS res_elapsed,
                   {at.format("greatest(coalesce(t.answered_at, :now), t.created_at)")}
                   - {at.format("t.created_at")} AS fr_elapsed
            FROM t LEFT JOIN steps s ON s.ticket_id = t.id
        ) t
    """


def _from_facts(facts: str, policy: Policy) -> str:
    """Each of the range's tickets' verdicts on the calendar, from their ticket_sla_facts rows
    (migrations 0020 and 0022), which hold the same sums over the same steps, kept per ticket as they
    are written, and the ticket's own columns: one scan of the range's facts, no join.

    In whole microseconds as bigint and timestamps, which compare far faster than numeric positions:
    an elapsed time of whole microseconds is within a target exactly when it is within the target's
    whole microseconds.
    """
    running = [s for s in UNSOLVED_STATUSES if s not in policy.pause_statuses]
    closed = " + ".join(f"t.{s}_us" for s in running) or "0"
    opened = " + ".join(f"t.{s}_open" for s in running) or "0"
    # Over the first reply's target when answered (or still waiting now) after creation plus the
    # target: the span has no day part, so the sum is plain microseconds whatever the time zone.
    verdicts = _verdicts(
        "t.first_reply_span",
        "coalesce(t.answered_at, :now) > t.created_at + t.first_reply_span",
        "t.resolution_us",
        "t.res > t.resolution_us",
    )
    return f"""
        SELECT t.grp, {verdicts}
        FROM (
            SELECT t.*, least(t.first_response_at, t.first_agent_reply_at) AS answered_at,
                   {closed} + CASE WHEN {opened} > 0 THEN greatest(:now_us, t.entered_us) ELSE 0 END AS res
            FROM ({facts}) t
        ) t
    """


def _verdicts(fr_target: str, fr_over: str, res_target: str, res_over: str) -> str:
    """first_reply and resolution: each ticket's verdict code (VERDICTS; NULL: not measured), from
    whether its elapsed time is over each target."""
    achieved, breached, pending = (VERDICTS[v] for v in ("achieved", "breached", "pending"))
    return f"""
        CASE WHEN {fr_target} IS NULL THEN NULL WHEN {fr_over} THEN {breached}
             WHEN t.answered_at IS NULL THEN {pending} ELSE {achieved} END AS first_reply,
        CASE WHEN {res_target} IS NULL THEN NULL WHEN {res_over} THEN {breached}
             WHEN t.status = ANY(CAST(:solved AS text[])) THEN {achieved} ELSE {pending} END AS resolution
    """


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
