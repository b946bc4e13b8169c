"""sla verdict days: SLA compliance counts of settled UTC days, so a month's read scans no ticket

SLA compliance on the calendar clock scanned the facts of every ticket created in the range (at 10M
tickets, 920,000 rows for 30 days: about 400 ms). A ticket's verdicts change only when a write
changes its facts, when the policy changes, or when time passes a deadline (a first reply's target,
or a running resolution's). So the verdicts of a day's tickets, counted once, stay the answer until
one of those happens:

- sla_verdict_days: per organization, UTC day of creation, priority, channel and assignee, how many
  tickets were achieved, breached and pending on first_reply and resolution when counted;
- sla_verdict_day_builds: per organization and day, the policy the counts were made under (a key of
  its targets and pause statuses), the instant they were counted at, and the earliest instant at
  which any of the day's pending verdicts turns by time alone (NULL: none does);
- sla_verdict_day_marks: a row per statement that wrote the facts of a day's tickets, written by
  statement triggers on ticket_sla_facts in the writer's own transaction (enabled ALWAYS, as the facts'
  own triggers are). A marked day is read live until it is counted again.

A mark is a new row each time (never ON CONFLICT DO NOTHING): the counting transaction, REPEATABLE
READ, deletes exactly the marks its snapshot sees, so a write that commits after that snapshot
leaves its mark behind with its change, and the day stays live until counted again.

Every day that has tickets now is marked here, so the first count after the upgrade takes them all.

Revision ID: 0024_sla_verdict_days
Revises: 0023_dimension_rollups_covering
Create Date: 2026-12-05 21:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_sla_verdict_days"
down_revision: str | None = "0023_dimension_rollups_covering"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAY = "CAST(created_at AT TIME ZONE 'UTC' AS date)"

MARKS_FUNCTION = f"""
CREATE FUNCTION sla_verdict_day_marks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, {_DAY} FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sla_verdict_day_marks (org_id, day)
        SELECT org_id, {_DAY} FROM new_rows UNION SELECT org_id, {_DAY} FROM old_rows;
    ELSE
        INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, {_DAY} FROM old_rows;
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    ("sla_verdict_days_inserted", "INSERT", "NEW TABLE AS new_rows"),
    ("sla_verdict_days_updated", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("sla_verdict_days_deleted", "DELETE", "OLD TABLE AS old_rows"),
)

_COUNTS = ", ".join(
    f"{metric}_{verdict} integer NOT NULL"
    for metric in ("first_reply", "resolution")
    for verdict in ("achieved", "breached", "pending")
)


def upgrade() -> None:
    op.execute(
        "CREATE TABLE sla_verdict_days (org_id bigint NOT NULL"
        " CONSTRAINT fk_sla_verdict_days_org_id_organizations REFERENCES organizations (id) ON DELETE CASCADE,"
        " day date NOT NULL, priority text NOT NULL, channel text NOT NULL, assigned_to text,"
        f" {_COUNTS})"
    )
    op.execute(
        "CREATE INDEX ix_sla_verdict_days_read ON sla_verdict_days (org_id, day)"
        " INCLUDE (priority, channel, assigned_to, first_reply_achieved, first_reply_breached,"
        " first_reply_pending, resolution_achieved, resolution_breached, resolution_pending)"
    )
    op.execute(
        "CREATE TABLE sla_verdict_day_builds (org_id bigint NOT NULL"
        " CONSTRAINT fk_sla_verdict_day_builds_org_id_organizations REFERENCES organizations (id)"
        " ON DELETE CASCADE, day date NOT NULL, policy_key text NOT NULL,"
        " counted_at timestamptz NOT NULL, valid_until timestamptz,"
        " CONSTRAINT pk_sla_verdict_day_builds PRIMARY KEY (org_id, day))"
    )
    # No foreign key: the triggers write marks while an organization's tickets are deleted with it.
    op.execute("CREATE TABLE sla_verdict_day_marks (org_id bigint NOT NULL, day date NOT NULL)")
    op.execute("CREATE INDEX ix_sla_verdict_day_marks_org_day ON sla_verdict_day_marks (org_id, day)")
    op.execute(MARKS_FUNCTION)
    for name, event, referencing in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON ticket_sla_facts REFERENCING {referencing}"
            " FOR EACH STATEMENT EXECUTE FUNCTION sla_verdict_day_marks()"
        )
        op.execute(f"ALTER TABLE ticket_sla_facts ENABLE ALWAYS TRIGGER {name}")
    op.execute(
        f"INSERT INTO sla_verdict_day_marks (org_id, day) SELECT DISTINCT org_id, {_DAY} FROM ticket_sla_facts"
    )


def downgrade() -> None:
    for name, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON ticket_sla_facts")
    op.execute("DROP FUNCTION sla_verdict_day_marks()")
    op.execute("DROP TABLE sla_verdict_day_marks")
    op.execute("DROP TABLE sla_verdict_day_builds")
    op.execute("DROP TABLE sla_verdict_days")
