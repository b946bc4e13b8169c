"""dimension change events: a ticket's channel and category changes are events, as its priority's are

A PATCH that changed a ticket's channel or category wrote no event, so the metrics derived again on
every write (backlog, solved, csat, next replies, waits) took the new value for the ticket's whole
past while its stored created, first response and resolved events kept the old one: one filter then
showed resolutions with no solves. The change is now a `channel_changed` or `category_changed`
event at its instant, and derived events take the values in force at theirs (dimension_history).

The check constraint admits the two types; it is added NOT VALID, since every stored row passes the
narrower one it replaces (no scan of the events). A ticket changed before this migration gets its
change event at its last write. Downgrade deletes the two types' events first.

Revision ID: 0031_dimension_change_events
Revises: 0030_deltas_every_dimension
Create Date: 2026-12-06 17:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031_dimension_change_events"
down_revision: str | None = "0030_deltas_every_dimension"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_ticket_events_event_type"
OLD_TYPES = (
    "'created', 'first_response', 'resolved', 'reopened', 'status_changed', 'priority_changed',"
    " 'assigned', 'sla_breached', 'backlog', 'solved', 'next_reply', 'rated'"
)
NEW_TYPES = OLD_TYPES + ", 'channel_changed', 'category_changed'"


def _check(types: str) -> None:
    op.execute(f"ALTER TABLE ticket_events DROP CONSTRAINT {CHECK}")
    op.execute(f"ALTER TABLE ticket_events ADD CONSTRAINT {CHECK} CHECK (event_type IN ({types})) NOT VALID")


# A ticket whose channel or category was changed before this migration has no event saying so: its
# last created/priority_changed/assigned event holds the value before. One change event each, at the
# ticket's last write (the change happened then or before), with the values it has now, so its
# history reads the old value before and the current one after (its derived events follow at its
# next write).
BACKFILL = """
INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,
                           category, assigned_to, detail)
SELECT t.org_id, t.id, '{name}_changed', t.updated_at, t.status, t.priority, t.channel, t.category,
       t.assigned_to, jsonb_build_object('from', l.{name}, 'to', t.{name})
FROM tickets t
JOIN (SELECT DISTINCT ON (e.ticket_id) e.ticket_id, e.channel, e.category
      FROM ticket_events e
      WHERE e.event_type IN ('created', 'priority_changed', 'assigned')
      ORDER BY e.ticket_id, e.occurred_at DESC, e.id DESC) l ON l.ticket_id = t.id
WHERE l.{name} IS DISTINCT FROM t.{name}
"""


def upgrade() -> None:
    _check(NEW_TYPES)
    for name in ("channel", "category"):
        op.execute(BACKFILL.format(name=name))


def downgrade() -> None:
    op.execute("DELETE FROM ticket_events WHERE event_type IN ('channel_changed', 'category_changed')")
    _check(OLD_TYPES)
