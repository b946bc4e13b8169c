"""the waits on the business clock: every solve carries its status spans

requester_wait_time, agent_wait_time and on_hold_time are the hours a ticket spent in some unsolved
statuses from creation to a solve. The solved event held only those hours per status, so a business
clock could not count them again. Each solved event's detail now also holds the spans themselves
(`spans`: [status, start, end], microseconds since the Unix epoch, cut at the solve; tickets.history
writes them for new events): the spans of existing solves are filled in here from the status history.
Their calendar values do not change; the dirty-hour trigger marks the hours of the rewritten events,
which the next refresh rebuilds to the same numbers.

The business rollups did not hold these metrics: every schedule's are marked out of date, so reads
count the raw events (exactly) until beat's business build has rebuilt them with the waits.

analytics_business_values holds, per schedule, each duration measurement's business value (with the
event's instant and dimensions), built and kept with the business rollups (same hours, same dirty
marks): an exact percentile on a business clock reads the values instead of counting open hours
event by event, which made it two to three times slower than the same calendar read.

Revision ID: 0015_business_waits
Revises: 0016_job_claim
Create Date: 2026-12-05 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015_business_waits"
down_revision: str | None = "0016_job_claim"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_US = "CAST(round(extract(epoch FROM {at}) * 1000000) AS bigint)"
SPANS = f"""
UPDATE ticket_events e SET detail = e.detail || jsonb_build_object('spans', (
    SELECT coalesce(jsonb_agg(jsonb_build_array(h.status, {_US.format(at="h.at")},
               {_US.format(at="least(coalesce(h.ends, e.occurred_at), e.occurred_at)")}) ORDER BY h.at, h.id),
           '[]'::jsonb)
    FROM (
        SELECT c.status, c.at, c.id, lead(c.at) OVER (ORDER BY c.at, c.id) AS ends
        FROM ticket_status_changes c WHERE c.ticket_id = e.ticket_id
    ) h
    WHERE h.status IN ('open', 'pending', 'on_hold') AND h.at < e.occurred_at))
WHERE e.event_type = 'solved' AND jsonb_typeof(e.detail) = 'object' AND e.detail->'spans' IS NULL
"""


def upgrade() -> None:
    op.execute(SPANS)
    op.execute("DELETE FROM analytics_business_rollups")
    op.create_table(
        "analytics_business_values",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("assigned_to", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_analytics_business_values_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_analytics_business_values_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
    )
    # Covering: an unfiltered exact read is an index-only scan of (instant, value).
    op.create_index(
        "ix_analytics_business_values_read",
        "analytics_business_values",
        ["org_id", "schedule_id", "metric", "occurred_at"],
        postgresql_include=["value"],
    )


def downgrade() -> None:
    op.drop_table("analytics_business_values")
    op.execute(
        "UPDATE ticket_events SET detail = detail - 'spans'"
        " WHERE event_type = 'solved' AND jsonb_typeof(detail) = 'object' AND detail ? 'spans'"
    )
    op.execute("DELETE FROM analytics_business_rollups")
