"""dimension change events: a ticket's channel and category changes are events, as its priority's are

A PATCH that changed a ticket's channel or category wrote no event, so the metrics derived again on
every write (backlog, solved, csat, next replies, waits) took the new value for the ticket's whole
past while its stored created, first response and resolved events kept the old one: one filter then
showed resolutions with no solves. The change is now a `channel_changed` or `category_changed`
event at its instant, and derived events take the values in force at theirs (dimension_history).

The check constraint admits the two types; it is added NOT VALID, since every stored row passes the
narrower one it replaces (no scan of the events). Downgrade deletes the two types' events first.

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


def upgrade() -> None:
    _check(NEW_TYPES)


def downgrade() -> None:
    op.execute("DELETE FROM ticket_events WHERE event_type IN ('channel_changed', 'category_changed')")
    _check(OLD_TYPES)
