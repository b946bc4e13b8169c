"""metric days: the hourly rollups summed per local day, so a long read merges days, not hours

A 90-day aggregation with percentiles read 2,160 hourly rows per group and merged their sketches
(at 10M tickets, 167 ms by priority and 239 ms by channel and priority). Its answer only needs one
row per group and day wherever a whole day lies inside one bucket.

- analytics_metric_days: the rows of analytics_metrics (same grains and dimensions) summed over the
  hours of one day, [day_start, day_end) in UTC instants: counts and sums added, min and max taken,
  sketches merged with their repeated keys folded. Imports' deltas are added in too.
- analytics_metric_day_builds: per organization, the days that have rows and when they were summed.
  A day is its bounds, not a date: local midnights of the organization's zone, 23 to 25 hours.
- analytics_metric_day_marks: a row per statement that changed what a day sums, written by statement
  triggers in the writer's own transaction (enabled ALWAYS, like the dirty hours' own triggers):
  a dirty hour marked, a delta appended, a rollup row written or removed. Marks are UTC ranges, so
  they hold whatever zone the days are in. A read takes a day's rows only while no mark overlaps it.

Every UTC day that has rollups when this runs is marked, so the first pass sums them all. A mark is
a new row each time: the summing transaction, REPEATABLE READ, deletes exactly the marks
its snapshot sees, so a change committed after that snapshot keeps its mark, and its day is read
from the hours until summed again.

Revision ID: 0025_metric_days
Revises: 0024_sla_verdict_days
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025_metric_days"
down_revision: str | None = "0024_sla_verdict_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC_DAY = "date_trunc('day', bucket_start, 'UTC')"

# Rows of analytics_metrics and its deltas are marked by the UTC day of their hour (one mark a day a
# statement touched); dirty hours by their own range.
ROWS_FUNCTION = f"""
CREATE FUNCTION analytics_metric_day_marks_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_metric_day_marks (org_id, lo, hi)
    SELECT org_id, day, day + interval '1 day'
    FROM (SELECT DISTINCT org_id, {_UTC_DAY} AS day FROM changed_rows) d;
    RETURN NULL;
END
$$
"""
DIRTY_FUNCTION = """
CREATE FUNCTION analytics_metric_day_marks_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_metric_day_marks (org_id, lo, hi) SELECT DISTINCT org_id, lo, hi FROM changed_rows;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    ("analytics_metric_days_rows_inserted", "analytics_metrics", "INSERT", "NEW", "rows"),
    ("analytics_metric_days_rows_updated", "analytics_metrics", "UPDATE", "NEW", "rows"),
    ("analytics_metric_days_rows_deleted", "analytics_metrics", "DELETE", "OLD", "rows"),
    ("analytics_metric_days_deltas_inserted", "analytics_metric_deltas", "INSERT", "NEW", "rows"),
    ("analytics_metric_days_dirty_inserted", "analytics_rollup_dirty", "INSERT", "NEW", "dirty"),
)


def upgrade() -> None:
    op.execute("CREATE TABLE analytics_metric_days (LIKE analytics_metric_deltas INCLUDING DEFAULTS)")
    op.execute(
        "ALTER TABLE analytics_metric_days ADD CONSTRAINT fk_analytics_metric_days_org_id_organizations"
        " FOREIGN KEY (org_id) REFERENCES organizations (id) ON DELETE CASCADE"
    )
    # Like the one-dimension hours' (0023): counts and means from the index alone.
    op.execute(
        "CREATE INDEX ix_analytics_metric_days_read ON analytics_metric_days (org_id, metric, grain, bucket_start)"
        " INCLUDE (priority, channel, status, category, assigned_to, count, sum, min, max)"
    )
    op.execute(
        "CREATE TABLE analytics_metric_day_builds (org_id bigint NOT NULL"
        " CONSTRAINT fk_analytics_metric_day_builds_org_id_organizations REFERENCES organizations (id)"
        " ON DELETE CASCADE, day_start timestamptz NOT NULL, day_end timestamptz NOT NULL,"
        " built_at timestamptz NOT NULL,"
        " CONSTRAINT pk_analytics_metric_day_builds PRIMARY KEY (org_id, day_start))"
    )
    # No foreign key: the triggers write marks while an organization's rows are deleted with it.
    op.execute(
        "CREATE TABLE analytics_metric_day_marks (org_id bigint NOT NULL, lo timestamptz NOT NULL,"
        " hi timestamptz NOT NULL)"
    )
    op.execute("CREATE INDEX ix_analytics_metric_day_marks_org_lo ON analytics_metric_day_marks (org_id, lo)")
    op.execute(ROWS_FUNCTION)
    op.execute(DIRTY_FUNCTION)
    for name, table, event, which, kind in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {which} TABLE AS changed_rows"
            f" FOR EACH STATEMENT EXECUTE FUNCTION analytics_metric_day_marks_{kind}()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    # Every UTC day that has rollups now is marked, so the first pass sums them all.
    op.execute(
        "INSERT INTO analytics_metric_day_marks (org_id, lo, hi)"
        f" SELECT org_id, {_UTC_DAY}, {_UTC_DAY} + interval '1 day' FROM analytics_metrics_totals"
        f" GROUP BY org_id, {_UTC_DAY}"
    )


def downgrade() -> None:
    for name, table, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    op.execute("DROP FUNCTION analytics_metric_day_marks_rows()")
    op.execute("DROP FUNCTION analytics_metric_day_marks_dirty()")
    op.execute("DROP TABLE analytics_metric_day_marks")
    op.execute("DROP TABLE analytics_metric_day_builds")
    op.execute("DROP TABLE analytics_metric_days")
