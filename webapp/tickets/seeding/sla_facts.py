"""The SLA facts of a seed's tickets, written once from its rows instead of by three triggers.

ticket_sla_facts (migrations 0020 and 0022) is kept by statement triggers: inserting tickets makes
each one's row, and inserting backlog steps and replies updates it. For a seed that is a row
written three times over and a third of the server's work, so the seed switches those insert
triggers off in its transaction and, once every batch is in, writes each ticket's row once: its
columns, the sums of its backlog steps and its first public agent reply, by the triggers' own
definitions. Where the seed's role may not alter the tables, the triggers stay on and it writes none.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import psycopg

from webapp.core.vocabulary import UNSOLVED_STATUSES
from webapp.tickets.seeding.switched_off import nested_loops_off, switched_off

TRIGGERS = (
    ("tickets", "ticket_sla_facts_ticket_inserted"),
    ("ticket_events", "ticket_sla_facts_steps_inserted"),
    ("ticket_replies", "ticket_sla_facts_replies_inserted"),
)
_COPIED = (
    "org_id", "created_at", "status", "priority", "channel", "category", "assigned_to", "first_response_at"
)  # fmt: skip
# An instant as whole microseconds since the epoch, as the triggers write them.
_US = "CAST(round(date_part('epoch', e.occurred_at) * 1000000) AS bigint)"
_STEP = "CAST(e.value AS bigint)"
_SUMS = ", ".join(
    f"coalesce(sum(-{_STEP} * {_US}) FILTER (WHERE e.status = '{s}'), 0) AS {s}_us, "
    f"coalesce(sum({_STEP}) FILTER (WHERE e.status = '{s}'), 0) AS {s}_open"
    for s in UNSOLVED_STATUSES
)
_STEP_COLUMNS = ", ".join(f"{s}_us, {s}_open" for s in UNSOLVED_STATUSES)
_RANGE = "org_id = %(org_id)s AND ticket_id BETWEEN %(first)s AND %(last)s"

WRITE_FACTS = f"""
INSERT INTO ticket_sla_facts
    (ticket_id, {", ".join(_COPIED)}, entered_us, {_STEP_COLUMNS}, first_agent_reply_at)
SELECT t.id, {", ".join(f"t.{c}" for c in _COPIED)}, g.entered_us,
       {", ".join(f"coalesce(g.{c}, 0)" for s in UNSOLVED_STATUSES for c in (f"{s}_us", f"{s}_open"))},
       r.at
FROM tickets t
LEFT JOIN (
    SELECT e.ticket_id, max({_US}) FILTER (WHERE e.value > 0) AS entered_us, {_SUMS}
    FROM ticket_events e WHERE e.{_RANGE} AND e.event_type = 'backlog' GROUP BY e.ticket_id
) g ON g.ticket_id = t.id
LEFT JOIN (
    SELECT r.ticket_id, min(r.at) AS at FROM ticket_replies r
    WHERE r.{_RANGE} AND r.author = 'agent' AND r.public GROUP BY r.ticket_id
) r ON r.ticket_id = t.id
WHERE t.org_id = %(org_id)s AND t.id BETWEEN %(first)s AND %(last)s
ORDER BY t.org_id, t.created_at
"""


def facts_by_seed(cur: psycopg.Cursor) -> AbstractContextManager[bool]:
    """Inside: inserted tickets, steps and replies write no SLA facts, if the role may switch the
    triggers off; yields whether it did (and the seed must call write_facts before leaving)."""
    return switched_off(cur, TRIGGERS)


def write_facts(cur: psycopg.Cursor, *, org_id: int, first: int, last: int) -> None:
    """The facts rows of tickets `first`..`last` of `org_id`, from their steps and replies (hash
    joins only: the rows were just written)."""
    with nested_loops_off(cur):
        cur.execute(WRITE_FACTS, {"org_id": org_id, "first": first, "last": last})
