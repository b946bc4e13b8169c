"""SLA compliance over the tickets created in a range, under a policy, in SQL.

Each ticket's verdicts (first_reply and resolution: achieved, breached or pending) are defined in
sla_verdicts. Compliance is achieved / (achieved + breached), per target and over all of them. On
the calendar clock, whole UTC days whose verdicts were counted ahead and still stand (sla_days) are
summed from their counts, and only the rest of the range is judged ticket by ticket from the facts.

next_reply is counted from the replies in one statement (next_reply below): every ticket of a
priority with a next_reply target counts, judged as clocks.evaluation judges it for
GET /tickets/{id}/sla (tests hold the two to the same answers); one without a pair (a customer reply
after an agent reply) is achieved there, so it is here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sla_days, sla_verdicts
from webapp.analytics.sql import filter_sql, parallel_costs
from webapp.clocks.evaluation import HOUR_US
from webapp.clocks.policy import Policy, policy_for
from webapp.core.filters import Filters
from webapp.core.vocabulary import PRIORITIES

GROUPS = ("assigned_to", "priority", "channel")
MEASURED = sla_verdicts.MEASURED


def _ratio(achieved: int, breached: int, pending: int) -> dict[str, Any]:
    judged = achieved + breached
    return {
        "achieved": achieved,
        "breached": breached,
        "pending": pending,
        "compliance": achieved / judged if judged else None,
        "compliance_pct": 100 * achieved / judged if judged else None,
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
    counted_days: bool = True,
) -> list[dict[str, Any]]:
    """Per group (one row when `group_by` is None): achieved, breached, pending and compliance of each
    measured target and of all of them together.

    On the calendar clock each ticket's elapsed times come from its ticket_sla_facts row, which also
    holds the ticket's columns read here (one scan of the range's facts, no join), except on the whole
    UTC days whose counts stand at `now` (sla_days; not with `counted_days` False); on a business
    clock, or with `from_steps`, from its backlog steps and replies themselves (the three agree: tests
    hold them to it).
    """
    if group_by is not None and group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    params = sla_verdicts.params(policy, org_id=org_id, now=now)
    params.update(start=start, end=end)
    calendar = policy.clock_name == "calendar" and not from_steps
    plan = sla_days.Plan(live=[(start, end)])
    if calendar and counted_days and sla_days.applies(filters, group_by):
        plan = sla_days.plan(session, org_id=org_id, start=start, end=end, policy=policy, now=now)
    parts: list[tuple[str, bool]] = []  # (verdicts, taken off)
    if calendar:

        def facts_of(pieces: list[tuple[datetime, datetime]] | None, tag: str = "") -> str:
            facts = sla_verdicts.tickets_range(
                "ticket_sla_facts f",
                "f.ticket_id",
                sla_verdicts.FACT_COLUMNS,
                group_by,
                filters,
                params,
                pieces=pieces,
                tag=tag,
            )
            return sla_verdicts.from_facts(facts, policy)

        if plan.live:
            # One interval is a plain range; several are one index range each.
            parts.append((facts_of(plan.live if len(plan.live) > 1 else None), False))
            params["start"], params["end"] = plan.live[0][0], plan.live[-1][1]
        if plan.counted:
            params["days"] = plan.counted
        if plan.outside:
            # The counted days' tickets outside the range, taken off their counts.
            parts.append((facts_of(plan.outside, tag="out_"), True))
    else:
        tickets = sla_verdicts.tickets_range("tickets t", "t.id", "", group_by, filters, params)
        parts.append((sla_verdicts.from_steps(tickets, policy), False))
    # OFFSET 0 keeps each ticket's verdicts a column computed once, not an expression per count.
    judged = [
        f"SELECT grp, {sla_verdicts.counts(negated=off)} FROM ({part} OFFSET 0) t GROUP BY grp"
        for part, off in parts
    ]
    if plan.counted:
        judged.append(sla_days.counted_rows(group_by, filters, params))
    if not judged:
        return _rows([], group_by)
    sums = ", ".join(f"sum(u.{c}) AS {c}" for c in sla_verdicts.COUNTED)
    union = " UNION ALL ".join(f"({part})" for part in judged)
    sql = text(f"SELECT grp, {sums} FROM ({union}) u GROUP BY grp ORDER BY grp NULLS FIRST")
    # Many tickets judged live are split across parallel workers; a few days' worth are not worth it.
    parallel = calendar and not plan.counted
    with parallel_costs(session) if parallel else contextlib.nullcontext():
        result = session.execute(sql, params).all()
    return _rows(result, group_by)


def _rows(result: Sequence[Any], group_by: str | None) -> list[dict[str, Any]]:
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


def next_reply(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    policy: Policy,
    now: datetime,
    fields: Sequence[str] = (),
) -> dict[tuple[str | None, ...], list[int]]:
    """Per combination of the tickets' `fields` (one key, (), with none): [achieved, breached, pending]
    of next_reply over the tickets created in the range, each ticket as clocks.evaluation judges it
    (breached if any pair ran over the target, else pending while the last pair runs, else achieved,
    with no pair too), in one statement on the policy's clock.

    A pair starts at a public customer reply whose previous public reply (by time, then id) is an
    agent's, and stops at the next public agent reply (running at `now` without one); only tickets
    of priorities whose next_reply target is set are read at all.
    """
    if any(field not in GROUPS for field in fields):
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    measured = [p for p in PRIORITIES if policy.target(p, "next_reply") is not None]
    counts: dict[tuple[str | None, ...], list[int]] = {}
    if not measured:
        return counts
    params: dict[str, Any] = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "now": now,
        "schedule_id": policy.schedule_id,
        "priorities": measured,
        # In whole microseconds as clocks.evaluation.run rounds them.
        "targets": [round(float(policy.target(p, "next_reply") or 0) * HOUR_US) for p in measured],
    }
    at = sla_verdicts.position(policy.clock_name, "{}")
    end = "greatest(coalesce(p.answered, :now), p.at)"
    # Passed once the pair's elapsed time exceeds the target, as clocks.evaluation judges it.
    over = f"{at.format(end)} - {at.format('p.at')} > t.target_us"
    keys = "".join(f", t.{field}" for field in fields)
    sql = text(
        f"""
        WITH t AS (
            SELECT t.id, s.target_us{keys}
            FROM tickets t
            JOIN unnest(CAST(:priorities AS text[]), CAST(:targets AS bigint[])) AS s(priority, target_us)
              ON s.priority = t.priority
            WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end
            {filter_sql("t", filters, params)}
        ), r AS (
            -- Each public reply with the author of the one before it, in (at, id) order.
            SELECT r.id, r.ticket_id, r.author, r.at,
                   lag(r.author) OVER (PARTITION BY r.ticket_id ORDER BY r.at, r.id) AS before
            FROM t CROSS JOIN LATERAL (
                -- (OFFSET 0: one index range a ticket, not a scan of every reply of the org)
                SELECT r.id, r.ticket_id, r.author, r.at FROM ticket_replies r
                WHERE r.ticket_id = t.id AND r.public OFFSET 0
            ) r
        ), pairs AS MATERIALIZED (
            -- A pair from each customer reply right after an agent's to the next agent reply.
            SELECT r.ticket_id, r.at, (
                       SELECT a.at FROM ticket_replies a
                       WHERE a.ticket_id = r.ticket_id AND a.public AND a.author = 'agent'
                         AND (a.at, a.id) > (r.at, r.id)
                       ORDER BY a.at, a.id LIMIT 1) AS answered
            FROM r WHERE r.author = 'customer' AND r.before = 'agent'
        ), judged AS (
            -- A ticket without a pair is achieved, as its own evaluation says (nothing was late).
            SELECT t.id AS ticket_id,
                   coalesce(bool_or(p.at IS NOT NULL AND ({over})), false) AS breached,
                   coalesce(bool_or(p.at IS NOT NULL AND p.answered IS NULL), false) AS running
            FROM t LEFT JOIN pairs p ON p.ticket_id = t.id
            GROUP BY t.id
        )
        SELECT count(*) FILTER (WHERE NOT j.breached AND NOT j.running) AS achieved,
               count(*) FILTER (WHERE j.breached) AS breached,
               count(*) FILTER (WHERE NOT j.breached AND j.running) AS pending{keys}
        FROM judged j JOIN t ON t.id = j.ticket_id
        {"GROUP BY " + keys.removeprefix(", ") if keys else ""}
        """
    )
    for row in session.execute(sql, params):
        triple = [int(row.achieved), int(row.breached), int(row.pending)]
        if any(triple):
            counts[tuple(row[3:])] = triple
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
    replies = next_reply(session, fields=fields, **window)
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
