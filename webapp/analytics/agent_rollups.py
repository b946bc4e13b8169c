"""Per-agent rollups of the agents report (agent_rollups), kept current by every writer.

A row sums, for one agent and one local day (grain DAY) or month (grain MONTH) of the organization's
zone, the solves whose ticket's next solve by the same agent falls on the local day `next_day`
(NEVER: none), and the ratings given that day (next_day NEVER). Per solve it counts the ticket
(solved), whether it had at most one public agent reply by then (one_touch), whether the ticket was
ever reopened (reopened), how many of its two SLA targets were met (achieved: first response and
resolution, with the targets the state row names), and adds its first-reply and resolution hours to
the sketches. Per rating it counts it (ratings) and whether it is good.

The report counts a ticket once per range, at its last solve in the range, with the values of that
solve (support.agents, whose resolution is measured to that solve and whose one-touch flag holds for
all its solves exactly when it holds for the last, replies only accumulating). A solve is the last
in [start, end) exactly when its next solve is at or after `end`: for a range of whole local days
that is next_day >= the end's date, so summing the rows of the range's buckets with that condition
counts each ticket once (agent_report does that, and reads the edges of other ranges raw).

Writers keep the rows current in their own transaction: a single-ticket write reads the ticket's
contributions before it changes anything (`forget_ticket`) and again after its derived events are
written (`add_ticket`), and upserts the difference in one statement, rows in primary-key order, so
two writers never wait on each other's rows in opposite orders; a write that moved nothing writes
nothing. An import adds its new tickets' contributions in one statement (`add_tickets`). Sketches
get (key, -1) pairs to subtract, which sketch.merge sums like any other pair; a row's sketch is
folded (repeated keys summed, zero counts dropped) once it grows past FOLD_BYTES.

A rebuild (`rebuild`) replaces an organization's rows from raw events and records the zone and SLA
targets it used in agent_rollup_state; writers and reads use the rows only while that state is the
organization's.

Writers take the organization's agent-rollup lock shared, a rebuild takes it exclusive, so a
rebuild never replaces rows from a snapshot that misses a delta a writer already applied to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import sketch
from webapp.analytics.sla import targets_for
from webapp.core.vocabulary import PRIORITIES
from webapp.models import Organization

DAY, MONTH = 1, 2
# next_day of a solve with no next solve by the same agent, and of a rating.
NEVER = date(9999, 12, 31)
# pg_advisory_xact_lock(LOCK_CLASS, org_id): "AGNT".
LOCK_CLASS = 0x41474E54
# A sketch longer than this is folded when a delta is appended to it.
FOLD_BYTES = 6 * 512
COUNTERS = ("solved", "one_touch", "reopened", "achieved", "ratings", "good")


@dataclass(frozen=True)
class State:
    """The zone and SLA targets an organization's rows were built with."""

    timezone: str
    targets: dict[str, dict[str, float]]


def measures_sql(solve_scope: str, rating_scope: str, events: str = "ticket_events") -> str:
    """CTEs ending in `measures`: one row per solve (`solve_scope` limits the solved events e, read
    from `events`) and per rating (`rating_scope`), with its agent, local day, next solve (at,
    next_at, next_day) and the values it adds. Shared by every writer, the rebuild and the report's
    raw edges."""
    first_h = "extract(epoch FROM t.first_response_at - t.created_at) / 3600.0"
    resolution_h = "extract(epoch FROM s.at - t.created_at) / 3600.0"
    return (
        "goals AS (SELECT * FROM unnest(CAST(:priorities AS text[]),"
        " CAST(:first_targets AS double precision[]), CAST(:resolution_targets AS double precision[]))"
        " AS g(priority, first_hours, resolution_hours)),"
        " solves AS (SELECT e.ticket_id, e.assigned_to AS agent, e.occurred_at AS at,"
        " e.value > 0 AS one_touch,"
        " lead(e.occurred_at) OVER (PARTITION BY e.ticket_id, e.assigned_to ORDER BY e.occurred_at, e.id)"
        f" AS next_at FROM {events} e WHERE e.org_id = :org_id AND e.event_type = 'solved'"
        f" AND e.assigned_to IS NOT NULL {solve_scope}),"
        " measures AS (SELECT s.agent, s.at, s.next_at, CAST(s.at AT TIME ZONE :tz AS date) AS day,"
        " coalesce(CAST(s.next_at AT TIME ZONE :tz AS date), CAST(:never AS date)) AS next_day,"
        " 1 AS solved, CAST(s.one_touch AS int) AS one_touch, CAST(t.reopen_count > 0 AS int) AS reopened,"
        f" CAST({first_h} IS NOT NULL AND {first_h} <= g.first_hours AS int)"
        f" + CAST({resolution_h} <= g.resolution_hours AS int) AS achieved,"
        " 0 AS ratings, 0 AS good,"
        f" CAST({first_h} AS double precision) AS first_h,"
        f" CAST({resolution_h} AS double precision) AS resolution_h"
        " FROM solves s JOIN tickets t ON t.id = s.ticket_id JOIN goals g ON g.priority = t.priority"
        " UNION ALL SELECT e.assigned_to, e.occurred_at, NULL, CAST(e.occurred_at AT TIME ZONE :tz AS date),"
        " CAST(:never AS date), 0, 0, 0, 0, 1, CAST(e.value > 0 AS int),"
        " CAST(NULL AS double precision), CAST(NULL AS double precision)"
        " FROM ticket_events e WHERE e.org_id = :org_id AND e.event_type = 'rated'"
        f" AND e.assigned_to IS NOT NULL {rating_scope})"
    )


def params_of(org_id: int, state: State) -> dict[str, Any]:
    """The bound values measures_sql reads."""
    return {
        "org_id": org_id,
        "tz": state.timezone,
        "never": NEVER,
        "priorities": list(PRIORITIES),
        "first_targets": [state.targets[p]["first_response_hours"] for p in PRIORITIES],
        "resolution_targets": [state.targets[p]["resolution_hours"] for p in PRIORITIES],
    }


def _sketch_sql(column: str) -> str:
    key = sketch.sql_key(column)
    return (
        "(SELECT grain, bucket, next_day, agent,"
        " string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea) AS blob"
        f" FROM (SELECT grain, bucket, next_day, agent, {key} AS k, :sign * count(*) AS n FROM expanded"
        f" WHERE {column} IS NOT NULL GROUP BY 1, 2, 3, 4, 5) keyed GROUP BY 1, 2, 3, 4)"
    )


def folded_sketch_sql(blob: str) -> str:
    """SQL for the sketch `blob` with repeated keys summed and zero counts dropped (NULL when empty)."""
    key = "get_byte(b, i) * 256 + get_byte(b, i + 1) - CASE WHEN get_byte(b, i) >= 128 THEN 65536 ELSE 0 END"
    count = (
        "((CAST(get_byte(b, i + 2) AS bigint) * 256 + get_byte(b, i + 3)) * 256"
        " + get_byte(b, i + 4)) * 256 + get_byte(b, i + 5)"
        " - CASE WHEN get_byte(b, i + 2) >= 128 THEN 4294967296 ELSE 0 END"
    )
    return (
        "(SELECT string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea ORDER BY k)"
        f" FROM (SELECT {key} AS k, sum({count}) AS n FROM (SELECT {blob} AS b OFFSET 0) blob,"
        " generate_series(0, length(b) - 6, 6) AS i GROUP BY 1 HAVING sum(" + count + ") <> 0) pairs)"
    )


def _merged(column: str) -> str:
    both = f"a.{column} || EXCLUDED.{column}"
    return (
        f"{column} = CASE WHEN a.{column} IS NULL THEN EXCLUDED.{column}"
        f" WHEN EXCLUDED.{column} IS NULL THEN a.{column}"
        f" WHEN length(a.{column}) + length(EXCLUDED.{column}) <= {FOLD_BYTES} THEN {both}"
        f" ELSE {folded_sketch_sql(both)} END"
    )


def cells_sql(solve_scope: str, rating_scope: str, events: str = "ticket_events") -> str:
    """The cells (grain, bucket, next_day, agent, counters, first and resolution sketches) of the
    scoped solves (of `events`) and ratings, times :sign."""
    counters = ", ".join(f"sum({c}) * :sign AS {c}" for c in COUNTERS)
    cell = "grain, bucket, next_day, agent"
    return (
        f"WITH {measures_sql(solve_scope, rating_scope, events)},"
        " expanded AS (SELECT g.grain, CASE WHEN g.grain = 1 THEN m.day"
        " ELSE CAST(date_trunc('month', m.day) AS date) END AS bucket, m.*"
        " FROM measures m CROSS JOIN (VALUES (1), (2)) AS g(grain)),"
        f" counted AS (SELECT {cell}, {counters} FROM expanded GROUP BY {cell})"
        f" SELECT c.grain, c.bucket, c.next_day, c.agent, {', '.join('c.' + x for x in COUNTERS)},"
        " f.blob AS first_sketch, r.blob AS resolution_sketch FROM counted c"
        f" LEFT JOIN {_sketch_sql('first_h')} f USING ({cell})"
        f" LEFT JOIN {_sketch_sql('resolution_h')} r USING ({cell})"
    )


COLUMNS = ("grain", "bucket", "next_day", "agent", *COUNTERS, "first_sketch", "resolution_sketch")
# Rows are upserted in the order of the primary key, so two writers lock shared rows in one order.
UPSERT = (
    f"INSERT INTO agent_rollups AS a (org_id, {', '.join(COLUMNS)}) SELECT :org_id, {', '.join(COLUMNS)}"
    " FROM ({cells}) AS cells ORDER BY grain, bucket, agent, next_day"
    " ON CONFLICT (org_id, grain, bucket, agent, next_day) DO UPDATE SET "
    + ", ".join(f"{c} = a.{c} + EXCLUDED.{c}" for c in COUNTERS)
    + f", {_merged('first_sketch')}, {_merged('resolution_sketch')}"
)
TYPES = ("smallint", "date", "date", "text", *(["bigint"] * len(COUNTERS)), "bytea", "bytea")
# The cells of a delta computed in Python, one array per column.
DELTA = (
    "SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(COLUMNS, TYPES, strict=True))
    + f") AS d({', '.join(COLUMNS)})"
)


def apply_sql(solve_scope: str, rating_scope: str, events: str = "ticket_events") -> str:
    """One statement: add :sign times the contributions of the scoped solves and ratings to the rows."""
    return UPSERT.replace("{cells}", cells_sql(solve_scope, rating_scope, events))


def lock(session: Session, org_id: int, *, shared: bool) -> None:
    """The organization's agent-rollup lock until the transaction ends: writers shared, rebuilds not."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(text(f"SELECT {function}(:cls, :org)"), {"cls": LOCK_CLASS, "org": org_id})


def state_of(session: Session, org_id: int) -> State | None:
    """The zone and targets the organization's rows were built with; None: never built."""
    row = session.execute(
        text("SELECT timezone, targets FROM agent_rollup_state WHERE org_id = :org_id"), {"org_id": org_id}
    ).first()
    return None if row is None else State(row.timezone, row.targets)


def current_state(org: Organization) -> State:
    """The zone and targets rows of `org` must be built with to answer its reports."""
    return State(org.timezone, targets_for(org.sla_targets))


# One ticket's events, read by ticket id alone (OFFSET 0: never intersected with the organization's
# whole range of solves in the (org_id, event_type, occurred_at) index).
ONE_TICKET = "(SELECT * FROM ticket_events WHERE ticket_id = :ticket_id OFFSET 0)"
ONE_TICKET_CELLS = cells_sql("", "AND e.ticket_id = :ticket_id", ONE_TICKET)
# session.info key: per (org_id, ticket_id), the state and the cells a write started from (signed -1).
PENDING = "agent_rollups.pending"
Cells = dict[tuple[Any, ...], Any]


def _locked_state(session: Session, org_id: int) -> State | None:
    lock(session, org_id, shared=True)
    return state_of(session, org_id)


def _ticket_cells(session: Session, org_id: int, state: State, ticket_id: int, sign: int) -> Cells:
    params = {**params_of(org_id, state), "ticket_id": ticket_id, "sign": sign}
    return {tuple(row[:4]): row for row in session.execute(text(ONE_TICKET_CELLS), params)}


def forget_ticket(session: Session, org_id: int, ticket_id: int) -> None:
    """Note the ticket's contributions as stored now, before a write changes the ticket (add_ticket
    applies the difference). Nothing is written yet: each write upserts rows in one statement."""
    state = _locked_state(session, org_id)
    pending = session.info.setdefault(PENDING, {})
    if state is None:  # never built: reads go raw until a rebuild, which reads every event
        pending.pop((org_id, ticket_id), None)
        return
    pending[(org_id, ticket_id)] = (state, _ticket_cells(session, org_id, state, ticket_id, -1))


def add_ticket(session: Session, org_id: int, ticket_id: int) -> None:
    """Apply the difference the write made to the ticket's contributions (all of them for a new one)."""
    session.flush()
    noted = session.info.get(PENDING, {}).pop((org_id, ticket_id), None)
    state, before = noted if noted is not None else (_locked_state(session, org_id), {})
    if state is None:
        return
    after = _ticket_cells(session, org_id, state, ticket_id, 1)
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[0], k[1], k[3], k[2])):
        old, new = before.get(key), after.get(key)
        counters = [sum(int(row._mapping[c]) for row in (old, new) if row is not None) for c in COUNTERS]
        sketches = []
        for name in ("first_sketch", "resolution_sketch"):
            keys, counts = sketch.merge([row._mapping[name] for row in (old, new) if row is not None])
            sketches.append(sketch.encode(keys, counts) if len(keys) else None)
        if any(counters) or any(sketches):
            for column, value in zip(COLUMNS, (*key, *counters, *sketches), strict=True):
                columns[column].append(value)
    if columns["grain"]:
        session.execute(text(UPSERT.replace("{cells}", DELTA)), {"org_id": org_id, **columns})


def add_tickets(session: Session, org_id: int, tickets: str) -> None:
    """Add the contributions of the new tickets listed (column id) in the caller's table `tickets`."""
    state = _locked_state(session, org_id)
    if state is None:
        return
    scope = f"AND e.ticket_id IN (SELECT id FROM {tickets})"
    session.execute(text(apply_sql(scope, scope)), {**params_of(org_id, state), "sign": 1})


def rebuild(session: Session, org: Organization) -> int:
    """Replace the organization's rows from raw events, for its zone and SLA targets now; rows written.

    Runs at READ COMMITTED under the exclusive lock, so it reads every writer that finished before.
    The caller commits.
    """
    lock(session, org.id, shared=False)
    state = current_state(org)
    session.execute(text("DELETE FROM agent_rollups WHERE org_id = :org_id"), {"org_id": org.id})
    result = session.execute(text(apply_sql("", "")), {**params_of(org.id, state), "sign": 1})
    session.execute(
        text(
            "INSERT INTO agent_rollup_state (org_id, timezone, targets, built_at)"
            " VALUES (:org_id, :tz, CAST(:targets AS jsonb), now()) ON CONFLICT (org_id) DO UPDATE"
            " SET timezone = EXCLUDED.timezone, targets = EXCLUDED.targets, built_at = EXCLUDED.built_at"
        ),
        {"org_id": org.id, "tz": state.timezone, "targets": json.dumps(state.targets)},
    )
    return int(result.rowcount or 0)


def stale_orgs(session: Session) -> list[int]:
    """Organizations with tickets whose rows are missing or were built for another zone or targets."""
    rows = session.execute(
        text(
            "SELECT o.id, o.timezone, o.sla_targets, s.timezone AS built_tz, s.targets AS built_targets"
            " FROM organizations o LEFT JOIN agent_rollup_state s ON s.org_id = o.id"
            " WHERE EXISTS (SELECT 1 FROM tickets t WHERE t.org_id = o.id) ORDER BY o.id"
        )
    )
    return [
        row.id
        for row in rows
        if row.built_tz is None
        or row.built_tz != row.timezone
        or row.built_targets != targets_for(row.sla_targets)
    ]
