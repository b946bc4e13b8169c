"""the cube: rollup rows keeping status, priority and channel together, in a partition of their own

A read that filters or groups on two or more dimensions had no rollup grain and read raw events
over its whole range: a year of one metric's events at 10M tickets a year passed the statement
timeout. The cube grain (status + priority + channel, bits 1 | 2 | 4 = 7) keeps the three
dimensions with short fixed lists together: 5 x 4 x 6 = 120 combinations, of which about 24 occur
per hour and metric, so any filter or group-by over them reads some 24 rows an hour instead of
every event. Category and assigned_to are free text, and their combinations with the others would
be about as many as the events; reads on them with another dimension stay raw.

The rows live in analytics_metrics_cube, with a covering index on (org_id, metric, bucket_start)
INCLUDE (status, priority, channel, count, sum, min, max): a count or mean over any filter on the
three is an index-only scan of the range. The same build and merge statements write every grain,
so nothing else changes for writers but one more grouping set.

Existing events: every hour holding some is marked dirty, so reads stay exact (raw for those hours)
until beat's refresh has rebuilt them, cube rows included.

Revision ID: 0011_cube_rollups
Revises: 0009_alerts_webhooks
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_cube_rollups"
down_revision: str | None = "0009_alerts_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CUBE_GRAIN = 7
ROLLED = "('created', 'first_response', 'resolved')"
# As the totals partition (0005): room for in-place updates, and a visibility map kept current for
# index-only scans.
OPTIONS = (
    "fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02,"
    " autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05"
)


def upgrade() -> None:
    op.execute(
        f"CREATE TABLE analytics_metrics_cube PARTITION OF analytics_metrics FOR VALUES IN ({CUBE_GRAIN})"
        f" WITH ({OPTIONS})"
    )
    op.execute(
        "CREATE INDEX ix_analytics_metrics_cube_read ON analytics_metrics_cube (org_id, metric, bucket_start)"
        " INCLUDE (status, priority, channel, count, sum, min, max)"
    )
    op.execute(
        "INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
        " SELECT org_id, event_type, date_trunc('hour', min(occurred_at), 'UTC'),"
        " date_trunc('hour', max(occurred_at), 'UTC') + interval '1 hour'"
        f" FROM ticket_events WHERE event_type IN {ROLLED} GROUP BY org_id, event_type"
    )


def downgrade() -> None:
    op.execute("DROP TABLE analytics_metrics_cube")
