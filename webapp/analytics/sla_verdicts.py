"""Each ticket's SLA verdicts under a policy, as SQL: the statements sla_compliance counts and
sla_days counts ahead.

Each ticket is held to its current priority's targets. first_reply is achieved when the first
response (first_response_at, or an earlier public agent reply) came within the target on the
policy's clock, breached when it came later or has not come and the target has passed by `now`, and
pending otherwise. resolution counts only the time the ticket's status history spends in unsolved
statuses that are not pause statuses, up to `now` (summed from the ticket's backlog steps, which
tickets.history derives from that history): breached once that exceeds the target, achieved when the
ticket is solved within it, pending otherwise (running or paused). On a business clock each duration
is the difference of business_open_seconds (migration 0006) at its two ends, one index lookup each.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from webapp.analytics.sql import filter_sql
from webapp.clocks.policy import UNSOLVED_STATUSES, Policy
from webapp.core.filters import Filters
from webapp.core.timeutil import epoch_micros
from webapp.core.vocabulary import PRIORITIES, RESOLVED_STATUSES

MEASURED = ("first_reply", "resolution")
# A ticket's verdict on a target, as the SQL codes it.
VERDICTS = {"achieved": 0, "breached": 1, "pending": 2}
# The counted columns of a compliance row: first_reply_achieved, ..., resolution_pending.
COUNTED = tuple(f"{metric}_{verdict}" for metric in MEASURED for verdict in VERDICTS)
# What a facts row holds beside its ticket's own columns: the first reply and the backlog steps' sums.
FACT_COLUMNS = ", ".join(
    [
        "f.first_agent_reply_at",
        "f.entered_us",
        *(f"f.{s}_{n}" for s in UNSOLVED_STATUSES for n in ("us", "open")),
    ]
)

# Target hours to the positions' microseconds.
_HOUR_US = 3_600_000_000


def position(clock: str, instant: str) -> str:
    """SQL for where `instant` lies on the clock, in microseconds (exact: whole microseconds on the
    calendar, as bigint, which sum and compare several times faster than numeric seconds)."""
    if clock == "calendar":
        return f"CAST(round(date_part('epoch', {instant}) * 1000000) AS bigint)"
    return f"(business_open_seconds(:schedule_id, {instant}) * 1000000)"


def _micros(hours: float | None) -> Decimal | None:
    return None if hours is None else Decimal(str(hours)) * _HOUR_US


def _whole(hours: float | None) -> int | None:
    """The target's whole microseconds (None: not measured)."""
    micros = _micros(hours)
    return None if micros is None else int(micros)


def whole_targets(policy: Policy) -> dict[str, list[int | None]]:
    """Per measured target, its whole microseconds per priority (PRIORITIES' order)."""
    return {metric: [_whole(policy.target(p, metric)) for p in PRIORITIES] for metric in MEASURED}


def params(policy: Policy, *, org_id: int, now: datetime) -> dict[str, Any]:
    """The bound values every statement here takes (the range's own are added by the caller)."""
    whole = whole_targets(policy)
    return {
        "org_id": org_id,
        "now": now,
        "now_us": epoch_micros(now),
        "schedule_id": policy.schedule_id,
        "priorities": list(PRIORITIES),
        # Targets in microseconds, as the positions are (exact: hours as decimals, not floats).
        "first_reply": [_micros(policy.target(p, "first_reply")) for p in PRIORITIES],
        "resolution": [_micros(policy.target(p, "resolution")) for p in PRIORITIES],
        # The same in whole microseconds (an elapsed time of whole microseconds is within a target
        # exactly when it is within the target's whole microseconds): the calendar's facts compare
        # as bigint and intervals, several times faster than as numeric.
        "first_reply_us": whole["first_reply"],
        "resolution_us": whole["resolution"],
        "running": [s for s in UNSOLVED_STATUSES if s not in policy.pause_statuses],
        "solved": list(RESOLVED_STATUSES),
    }


# Each priority's targets (params' values), as rows to join a ticket's priority to.
TARGETS = """
    SELECT s.*, s.first_reply_us * interval '1 microsecond' AS first_reply_span
    FROM unnest(CAST(:priorities AS text[]), CAST(:first_reply AS numeric[]),
                CAST(:resolution AS numeric[]), CAST(:first_reply_us AS bigint[]),
                CAST(:resolution_us AS bigint[]))
         AS s(priority, first_reply, resolution, first_reply_us, resolution_us)
"""


def tickets_range(
    table: str,
    ticket_id: str,
    extra: str,
    group_by: str | None,
    filters: Filters,
    bound: dict[str, Any],
    *,
    pieces: Sequence[tuple[datetime, datetime]] | None = None,
    tag: str = "",
) -> str:
    """The rows of `table` (tickets, or the facts that hold the same columns) of the tickets created
    in the range and passing the filters: id, status, created_at, first_response_at, grp, their
    priority's targets, and the `extra` columns.

    The range is [:start, :end), or with `pieces` the union of those intervals (disjoint), each bound
    here as :<tag>lo<i> and :<tag>hi<i>, and read by the (org_id, created_at) index on its own.
    """
    alias = table.split()[1]
    group = f"{alias}.{group_by}" if group_by else "NULL::text"
    if pieces is None:
        rows = f"AND {alias}.created_at >= :start AND {alias}.created_at < :end"
    else:
        ranges = []
        for i, (lo, hi) in enumerate(pieces):
            bound[f"{tag}lo{i}"], bound[f"{tag}hi{i}"] = lo, hi
            ranges.append(f"({alias}.created_at >= :{tag}lo{i} AND {alias}.created_at < :{tag}hi{i})")
        rows = f"AND ({' OR '.join(ranges) or 'false'})"
    return f"""
        SELECT {ticket_id} AS id, {alias}.status, {alias}.created_at, {alias}.first_response_at,
               {group} AS grp, s.first_reply AS first_reply_target, s.resolution AS resolution_target,
               s.first_reply_span, s.resolution_us{", " + extra if extra else ""}
        FROM {table}
        JOIN ({TARGETS}) s ON s.priority = {alias}.priority
        WHERE {alias}.org_id = :org_id {rows}
        {filter_sql(alias, filters, bound)}
    """


def from_steps(tickets: str, policy: Policy, *, since: str = ":start") -> str:
    """The range's tickets' grp and verdicts on the policy's clock, with fr_elapsed and res_elapsed
    summed from their backlog steps and replies. `since`: SQL for an instant no ticket of `tickets`
    was created before (their steps are read from there)."""
    at = position(policy.clock_name, "{}")
    # Breached once the elapsed time exceeds the target, on either clock: a business target used up
    # exactly at closing time is not passed while the clock stands still (clocks.evaluation).
    fr_over = "fr_elapsed > t.first_reply_target"
    res_over = "res_elapsed > t.resolution_target"
    verdicts = _verdicts("t.first_reply_target", fr_over, "t.resolution_target", res_over)
    steps = (
        "ticket_events e WHERE e.org_id = :org_id AND e.event_type = 'backlog'"
        f" AND e.occurred_at >= {since} AND e.status = ANY(CAST(:running AS text[]))"
        " AND e.ticket_id IN (SELECT id FROM t)"
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
            FROM {steps}
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


def from_facts(facts: str, policy: Policy, *, keep: str = "t.grp", turns: bool = False) -> str:
    """Each of the range's tickets' `keep` columns and verdicts on the calendar, from their
    ticket_sla_facts rows (migrations 0020 and 0022), which hold the same sums over the same steps,
    kept per ticket as they are written, and the ticket's own columns: one scan of the range's facts,
    no join.

    In whole microseconds as bigint and timestamps, which compare far faster than numeric positions:
    an elapsed time of whole microseconds is within a target exactly when it is within the target's
    whole microseconds.

    With `turns`, also when each pending verdict turns breached by time alone, in whole microseconds
    since the epoch (it is breached at `now` exactly when the turn is before `now`; NULL: it does
    not turn until a write changes the ticket): `first_reply_turn`, the first reply's deadline
    while it waits; `resolution_turn`, while a running status is open, the instant its elapsed time
    passes the resolution target. And `odd`: a resolution achieved with a running status still open
    (facts no domain write leaves), which time alone would turn from achieved to breached.
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
    change = ""
    if turns:
        achieved, pending = VERDICTS["achieved"], VERDICTS["pending"]
        # Breached once now > created + target while waiting. Elapsed = closed + greatest(now,
        # entered) while open, and a pending one has entered <= target - closed: it passes the
        # target once now > target - closed. Both exact in microseconds.
        change = f""",
            CASE WHEN t.first_reply = {pending}
                 THEN CAST(round(date_part('epoch', t.created_at + t.first_reply_span) * 1000000) AS bigint)
            END AS first_reply_turn,
            CASE WHEN t.resolution = {pending} AND t.running_open THEN t.resolution_us - t.closed
            END AS resolution_turn,
            coalesce(t.resolution = {achieved} AND t.running_open, false) AS odd"""
    return f"""
        SELECT {keep}, t.first_reply, t.resolution{change}
        FROM (
            SELECT t.*, {verdicts}
            FROM (
                SELECT t.*, least(t.first_response_at, t.first_agent_reply_at) AS answered_at,
                       {closed} AS closed, {opened} > 0 AS running_open,
                       {closed} + CASE WHEN {opened} > 0
                           THEN greatest(:now_us, t.entered_us) ELSE 0 END AS res
                FROM ({facts}) t
            ) t
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


def counts(alias: str = "t", *, negated: bool = False) -> str:
    """Select items counting the verdicts of `alias`'s rows: first_reply_achieved, ... (each count
    negated with `negated`, for rows to be taken off a sum)."""
    sign = "-" if negated else ""
    return ", ".join(
        f"{sign}count(*) FILTER (WHERE {alias}.{metric} = {code}) AS {metric}_{verdict}"
        for metric in MEASURED
        for verdict, code in VERDICTS.items()
    )
