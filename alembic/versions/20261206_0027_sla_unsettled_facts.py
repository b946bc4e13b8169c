"""sla unsettled facts: a counted day keeps its unsettled tickets' facts, read as one range

A counted day listed its unsettled tickets by id (0026), and a read looked each one up in
ticket_sla_facts by primary key: at 10M tickets a month's 25,000 unsettled tickets took about 80 ms,
some 3 us a ticket, where a range of facts costs under 1 us a ticket. The facts a day's unsettled
tickets had when counted are the facts a read needs: any write to them since leaves a mark on the
day, and a marked day is read live from ticket_sla_facts.

- sla_verdict_day_unsettled holds a copy of each unsettled ticket's ticket_sla_facts row (its
  columns as of this migration) beside the day, read by (org_id, day) as one index range a day;
- sla_verdict_day_builds.recount_at: the latest instant at which a listed ticket's verdict turns by
  time alone (NULL: none listed); from then on the day is counted again, so the tickets that have
  settled since leave the list.

The old lists hold ids alone: sla_days.DEFINITION moves to 3, so every day is counted again by beat's
next pass (read live until then).

Revision ID: 0027_sla_unsettled_facts
Revises: 0026_sla_unsettled_tickets
Create Date: 2026-12-06 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027_sla_unsettled_facts"
down_revision: str | None = "0026_sla_unsettled_tickets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TABLE sla_verdict_day_unsettled")
    op.execute(
        "CREATE TABLE sla_verdict_day_unsettled (day date NOT NULL, LIKE ticket_sla_facts INCLUDING DEFAULTS)"
    )
    op.execute(
        "ALTER TABLE sla_verdict_day_unsettled ADD CONSTRAINT fk_sla_verdict_day_unsettled_org_id_organizations"
        " FOREIGN KEY (org_id) REFERENCES organizations (id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX ix_sla_verdict_day_unsettled_org_day ON sla_verdict_day_unsettled (org_id, day)")
    op.execute("ALTER TABLE sla_verdict_day_builds ADD COLUMN recount_at timestamptz")


def downgrade() -> None:
    # Counts made with a facts copy are 0026's counts; their lists go back to ids, so the days are
    # dropped and marked, and 0026's code counts them again.
    op.execute(
        "INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, day FROM sla_verdict_day_builds"
    )
    op.execute("DELETE FROM sla_verdict_day_builds")
    op.execute("DELETE FROM sla_verdict_days")
    op.execute("ALTER TABLE sla_verdict_day_builds DROP COLUMN recount_at")
    op.execute("DROP TABLE sla_verdict_day_unsettled")
    op.execute(
        "CREATE TABLE sla_verdict_day_unsettled (org_id bigint NOT NULL"
        " CONSTRAINT fk_sla_verdict_day_unsettled_org_id_organizations REFERENCES organizations (id)"
        " ON DELETE CASCADE, day date NOT NULL, ticket_id bigint NOT NULL)"
    )
    op.execute(
        "CREATE INDEX ix_sla_verdict_day_unsettled_org_day ON sla_verdict_day_unsettled (org_id, day)"
        " INCLUDE (ticket_id)"
    )
