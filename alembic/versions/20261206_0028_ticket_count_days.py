"""ticket count days: the distributions' hourly counts summed per UTC day, kept by a trigger

A 90-day distribution summed the hourly rows of analytics_ticket_counts: 2,160 hours times the
field's values (7 ms at 1M tickets over HTTP, behind DuckDB's 5.6 ms for the category). Its whole UTC
days can be read from one row per day and value instead.

analytics_ticket_count_days holds signed deltas (org_id, day, field, value, count) like the hourly
table, `day` being a UTC midnight. A statement trigger on analytics_ticket_counts adds each inserted
hourly row's count to its day and takes each deleted one's off, in the writer's transaction, whoever
writes the hours (the tickets' trigger, an import, a COPY seed, a compaction, SQL by hand), so a
day's rows sum to its hours at any snapshot. Enabled ALWAYS, like the tickets' count trigger. A
writer whose statement leaves every hour's sum as it was (ticket_counts.compact) sets the
transaction-local `analytics.ticket_count_days_kept` to 'on' and the trigger writes nothing. The
hourly rows there are now are summed into days here.

Revision ID: 0028_ticket_count_days
Revises: 0027_sla_verdict_turns
Create Date: 2026-12-06 08:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028_ticket_count_days"
down_revision: str | None = "0027_sla_verdict_turns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAY = "date_trunc('day', {}.hour, 'UTC')"

# Hourly rows deleted with their organization leave nothing to count (its day rows go with it).
FUNCTION = f"""
CREATE FUNCTION analytics_ticket_count_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('analytics.ticket_count_days_kept', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO analytics_ticket_count_days (org_id, day, field, value, count)
        SELECT n.org_id, {_DAY.format("n")}, n.field, n.value, sum(n.count)
        FROM new_rows n GROUP BY 1, 2, 3, 4 HAVING sum(n.count) <> 0;
    ELSE
        INSERT INTO analytics_ticket_count_days (org_id, day, field, value, count)
        SELECT o.org_id, {_DAY.format("o")}, o.field, o.value, -sum(o.count)
        FROM old_rows o WHERE EXISTS (SELECT 1 FROM organizations g WHERE g.id = o.org_id)
        GROUP BY 1, 2, 3, 4 HAVING sum(o.count) <> 0;
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    ("analytics_ticket_count_days_inserted", "INSERT", "NEW TABLE AS new_rows"),
    ("analytics_ticket_count_days_deleted", "DELETE", "OLD TABLE AS old_rows"),
)


def upgrade() -> None:
    op.execute(
        "CREATE TABLE analytics_ticket_count_days ("
        " org_id bigint NOT NULL CONSTRAINT fk_analytics_ticket_count_days_org_id_organizations"
        " REFERENCES organizations (id) ON DELETE CASCADE,"
        " day timestamptz NOT NULL, field text NOT NULL, value text, count bigint NOT NULL)"
    )
    # Writers of hours wait from here to the commit: none can land between the fill's snapshot and
    # the trigger that keeps the days from then on.
    op.execute("LOCK TABLE analytics_ticket_counts IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO analytics_ticket_count_days (org_id, day, field, value, count)"
        f" SELECT c.org_id, {_DAY.format('c')}, c.field, c.value, sum(c.count)"
        " FROM analytics_ticket_counts c GROUP BY 1, 2, 3, 4 HAVING sum(c.count) <> 0"
    )
    op.execute(
        "CREATE INDEX ix_analytics_ticket_count_days_read ON analytics_ticket_count_days"
        " (org_id, field, day) INCLUDE (value, count)"
    )
    op.execute(FUNCTION)
    for name, event, referencing in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON analytics_ticket_counts REFERENCING {referencing}"
            " FOR EACH STATEMENT EXECUTE FUNCTION analytics_ticket_count_days()"
        )
        op.execute(f"ALTER TABLE analytics_ticket_counts ENABLE ALWAYS TRIGGER {name}")


def downgrade() -> None:
    for name, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON analytics_ticket_counts")
    op.execute("DROP FUNCTION analytics_ticket_count_days()")
    op.execute("DROP TABLE analytics_ticket_count_days")
