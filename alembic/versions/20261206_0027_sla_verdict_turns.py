"""sla verdict turns: a counted day holds every ticket, with the instants its pending verdicts turn

A counted day held its settled tickets alone and listed the others by id (0026); a read judged those
one by one, by primary key: at 10M tickets a month's 25,000 unsettled tickets took about 80 ms. A
ticket's verdict can turn by time alone in two ways only, each once, from pending to breached: its
first reply's deadline passes while it waits, or its resolution's elapsed time passes the target
while a running status is open. Both instants are known when the day is counted (whole microseconds
since the epoch), and any write to the ticket since marks the day.

- sla_verdict_days counts every ticket of the day as it stood when counted, and keeps, per row, the
  sorted instants at which its pending first replies (first_reply_turns) and resolutions
  (resolution_turns) turn breached: a read at `now` moves those before `now` from pending to
  breached (a binary search of each row's array), with no ticket read at all;
- sla_verdict_day_unsettled goes.

Counts made the old way hold settled tickets alone: sla_days.DEFINITION moves to 3, so every day is
counted again by beat's next pass (read live until then).

Revision ID: 0027_sla_verdict_turns
Revises: 0026_sla_unsettled_tickets
Create Date: 2026-12-06 02:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027_sla_verdict_turns"
down_revision: str | None = "0026_sla_unsettled_tickets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TABLE sla_verdict_day_unsettled")
    op.execute(
        "ALTER TABLE sla_verdict_days ADD COLUMN first_reply_turns bigint[],"
        " ADD COLUMN resolution_turns bigint[]"
    )


def downgrade() -> None:
    # Counts of every ticket are not 0026's (settled tickets alone): dropped, their days marked, so
    # 0026's code counts them again.
    op.execute(
        "INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, day FROM sla_verdict_day_builds"
    )
    op.execute("DELETE FROM sla_verdict_day_builds")
    op.execute("DELETE FROM sla_verdict_days")
    op.execute("ALTER TABLE sla_verdict_days DROP COLUMN first_reply_turns, DROP COLUMN resolution_turns")
    op.execute(
        "CREATE TABLE sla_verdict_day_unsettled (org_id bigint NOT NULL"
        " CONSTRAINT fk_sla_verdict_day_unsettled_org_id_organizations REFERENCES organizations (id)"
        " ON DELETE CASCADE, day date NOT NULL, ticket_id bigint NOT NULL)"
    )
    op.execute(
        "CREATE INDEX ix_sla_verdict_day_unsettled_org_day ON sla_verdict_day_unsettled (org_id, day)"
        " INCLUDE (ticket_id)"
    )
