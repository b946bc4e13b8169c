"""sla unsettled tickets: a day's counts hold its settled tickets, the others are judged by id

Counts of a day (0024) stood only until the earliest deadline of its pending tickets
(valid_until): a young day's first deadline is minutes away, so its counts rarely stood, and a month's
read judged about 127,000 tickets one by one at 10M tickets. A ticket's verdicts can turn by time
alone only while its first reply waits or a running status is open; every other ticket's verdicts
stay until a write changes its facts (which marks its day).

- sla_verdict_days now counts only the settled tickets (changes_at NULL when counted);
- sla_verdict_day_unsettled lists, per organization and day, the tickets that were not: a read judges
  them live by primary key from their facts, as it judges the range's partial days;
- sla_verdict_day_builds.valid_until goes: the counts of a day no longer expire by time.

Existing counts were made the old way; sla_days.DEFINITION moves to 2, so every day is counted again
by beat's next pass (they are read live until then).

Revision ID: 0026_sla_unsettled_tickets
Revises: 0025_metric_days
Create Date: 2026-12-06 00:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026_sla_unsettled_tickets"
down_revision: str | None = "0025_metric_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE sla_verdict_day_unsettled (org_id bigint NOT NULL"
        " CONSTRAINT fk_sla_verdict_day_unsettled_org_id_organizations REFERENCES organizations (id)"
        " ON DELETE CASCADE, day date NOT NULL, ticket_id bigint NOT NULL)"
    )
    op.execute(
        "CREATE INDEX ix_sla_verdict_day_unsettled_org_day ON sla_verdict_day_unsettled (org_id, day)"
        " INCLUDE (ticket_id)"
    )
    op.execute("ALTER TABLE sla_verdict_day_builds DROP COLUMN valid_until")


def downgrade() -> None:
    # Counts of settled tickets alone are not 0024's: drop them, so the old code counts every day again.
    op.execute("ALTER TABLE sla_verdict_day_builds ADD COLUMN valid_until timestamptz")
    op.execute(
        "INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, day FROM sla_verdict_day_builds"
    )
    op.execute("DELETE FROM sla_verdict_day_builds")
    op.execute("DELETE FROM sla_verdict_days")
    op.execute("DROP TABLE sla_verdict_day_unsettled")
