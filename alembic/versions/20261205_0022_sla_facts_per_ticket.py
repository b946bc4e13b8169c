"""sla facts per ticket: every ticket has its facts row, with what a compliance read filters on

A calendar compliance read joined the range's tickets (for their priority, status, first response
and dimensions) to the range's ticket_sla_facts rows: at 1M tickets a parallel hash join of 92,000
rows for 30 days, most of the read's time. Each facts row now also holds those columns of its
ticket (status, priority, channel, category, assigned_to, first_response_at), so the read scans the
facts alone.

Every ticket gets its row when it is written (a statement trigger on inserts into tickets), not at
its first backlog step or reply: a ticket imported already solved has neither, and the read must
still count it. The update trigger on tickets, which moved a row with its ticket's creation instant,
now copies every one of those columns. The steps' and replies' triggers only update rows that
exist from then on. All enabled ALWAYS, as the 0020 triggers are: a bulk load in replica mode keeps
them too. Existing tickets get their rows and columns here.

Revision ID: 0022_sla_facts_per_ticket
Revises: 0021_event_values_in_index
Create Date: 2026-12-05 19:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0022_sla_facts_per_ticket"
down_revision: str | None = "0021_event_values_in_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _revision_0020() -> ModuleType:
    """Migration 0020, for its step sums (the same here) and the functions a downgrade puts back."""
    path = Path(__file__).with_name("20261205_0020_ticket_sla_facts.py")
    spec = importlib.util.spec_from_file_location("revision_0020_ticket_sla_facts", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_0020 = _revision_0020()
_US = _0020._US

# The ticket's columns each facts row holds, with their types (as tickets has them).
COPIED = {
    "status": "varchar(16)",
    "priority": "varchar(16)",
    "channel": "varchar(16)",
    "category": "varchar(100)",
    "assigned_to": "varchar(200)",
    "first_response_at": "timestamptz",
}
NOT_NULL = ("status", "priority", "channel", "category")
_COPIED = ", ".join(COPIED)


STEPS_TRIGGER = f"""
CREATE OR REPLACE FUNCTION ticket_sla_facts_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE ticket_sla_facts AS f SET
            entered_us = greatest(f.entered_us, g.entered_us), {_0020._applied("+", "g")}
        FROM (SELECT n.ticket_id, max({_US.format("n.occurred_at")}) FILTER (WHERE n.value > 0) AS entered_us,
                     {_0020._sums("n")}
              FROM new_rows n WHERE n.event_type = 'backlog' GROUP BY n.ticket_id) g
        WHERE f.ticket_id = g.ticket_id;
    ELSE
        UPDATE ticket_sla_facts AS f SET {_0020._applied("-", "g")},
            entered_us = {_0020._LATEST_ENTRY}
        FROM (SELECT o.ticket_id, {_0020._sums("o")} FROM old_rows o WHERE o.event_type = 'backlog'
              GROUP BY o.ticket_id) g
        WHERE f.ticket_id = g.ticket_id;
    END IF;
    RETURN NULL;
END
$$
"""

REPLIES_TRIGGER = f"""
CREATE OR REPLACE FUNCTION ticket_sla_facts_replies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE ticket_sla_facts AS f SET first_agent_reply_at = least(f.first_agent_reply_at, g.at)
        FROM (SELECT n.ticket_id, min(n.at) AS at FROM new_rows n
              WHERE n.author = 'agent' AND n.public GROUP BY n.ticket_id) g
        WHERE f.ticket_id = g.ticket_id;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE ticket_sla_facts AS f SET first_agent_reply_at = {_0020._FIRST_REPLY}
        WHERE f.ticket_id IN (SELECT o.ticket_id FROM old_rows o UNION SELECT n.ticket_id FROM new_rows n);
    ELSE
        UPDATE ticket_sla_facts AS f SET first_agent_reply_at = {_0020._FIRST_REPLY}
        WHERE f.ticket_id IN (SELECT o.ticket_id FROM old_rows o);
    END IF;
    RETURN NULL;
END
$$
"""

_ROW = ", ".join(f"{c} = n.{c}" for c in ("created_at", *COPIED))
_FACTS = ", ".join(f"f.{c}" for c in ("created_at", *COPIED))
_TICKET = ", ".join(f"n.{c}" for c in ("created_at", *COPIED))

TICKETS_TRIGGER = f"""
CREATE FUNCTION ticket_sla_facts_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_sla_facts (ticket_id, org_id, created_at, {_COPIED})
        SELECT n.id, n.org_id, {_TICKET} FROM new_rows n;
    ELSE
        UPDATE ticket_sla_facts AS f SET {_ROW}
        FROM new_rows n WHERE f.ticket_id = n.id AND ({_FACTS}) IS DISTINCT FROM ({_TICKET});
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    ("ticket_sla_facts_ticket_inserted", "INSERT", "NEW TABLE AS new_rows"),
    ("ticket_sla_facts_ticket_updated", "UPDATE", "NEW TABLE AS new_rows"),
)


def upgrade() -> None:
    op.execute("DROP TRIGGER ticket_sla_facts_moved ON tickets")
    op.execute("DROP FUNCTION ticket_sla_facts_moved()")
    op.execute(
        "ALTER TABLE ticket_sla_facts " + ", ".join(f"ADD COLUMN {c} {kind}" for c, kind in COPIED.items())
    )
    # The rows there are get their tickets' columns; the tickets without one get theirs.
    op.execute(
        f"UPDATE ticket_sla_facts AS f SET {', '.join(f'{c} = t.{c}' for c in COPIED)}"
        " FROM tickets t WHERE t.id = f.ticket_id"
    )
    op.execute(
        f"INSERT INTO ticket_sla_facts (ticket_id, org_id, created_at, {_COPIED})"
        f" SELECT t.id, t.org_id, t.created_at, {', '.join(f't.{c}' for c in COPIED)} FROM tickets t"
        " WHERE NOT EXISTS (SELECT 1 FROM ticket_sla_facts f WHERE f.ticket_id = t.id)"
        " ORDER BY t.org_id, t.created_at"
    )
    op.execute(
        "ALTER TABLE ticket_sla_facts " + ", ".join(f"ALTER COLUMN {c} SET NOT NULL" for c in NOT_NULL)
    )
    op.execute(STEPS_TRIGGER)
    op.execute(REPLIES_TRIGGER)
    op.execute(TICKETS_TRIGGER)
    for name, event, referencing in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON tickets REFERENCING {referencing}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ticket_sla_facts_tickets()"
        )
        op.execute(f"ALTER TABLE tickets ENABLE ALWAYS TRIGGER {name}")


def downgrade() -> None:
    for name, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON tickets")
    op.execute("DROP FUNCTION ticket_sla_facts_tickets()")
    # 0020's functions, which make a row at a ticket's first step or reply.
    for function in (_0020.STEPS_TRIGGER, _0020.REPLIES_TRIGGER, _0020.MOVED_TRIGGER):
        op.execute(function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(
        "CREATE TRIGGER ticket_sla_facts_moved AFTER UPDATE ON tickets REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION ticket_sla_facts_moved()"
    )
    op.execute("ALTER TABLE tickets ENABLE ALWAYS TRIGGER ticket_sla_facts_moved")
    op.execute("ALTER TABLE ticket_sla_facts " + ", ".join(f"DROP COLUMN {c}" for c in COPIED))
