"""event values in the index: raw duration reads scan the index alone

The exact percentiles of a duration over a range (and its count, mean, minimum and maximum) read
each event's value in the range. The events of one type in a time range lie on as many heap pages as
there are events (they are written ticket by ticket), so at 1M tickets the 97,000 resolutions of 30
days read 97,000 pages: 75 ms of a 106 ms read. With the value in the (org_id, event_type,
occurred_at) index the same read is an index-only scan of 7,900 pages (41 ms in all), for an index
a quarter larger. Built beside the old one, which then goes, and takes its name.

Revision ID: 0021_event_values_in_index
Revises: 0020_ticket_sla_facts
Create Date: 2026-12-05 14:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_event_values_in_index"
down_revision: str | None = "0020_ticket_sla_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_ticket_events_org_type_occurred"


def _rebuild(include: str) -> None:
    op.execute(f"CREATE INDEX {NAME}_new ON ticket_events (org_id, event_type, occurred_at){include}")
    op.execute(f"DROP INDEX {NAME}")
    op.execute(f"ALTER INDEX {NAME}_new RENAME TO {NAME}")


def upgrade() -> None:
    _rebuild(" INCLUDE (value)")


def downgrade() -> None:
    _rebuild("")
