"""business-hours rollups per schedule

analytics_business_metrics holds, per schedule, the hourly rollups of the duration metrics counted
in the schedule's open hours: the cells of analytics_metrics (grain, UTC hour, kept dimensions) with
the schedule as one more key. analytics_business_rollups says which version of each schedule they
were built for; reads use them only while that is the schedule's version, and read raw events
otherwise, so a changed schedule answers exactly from the moment it commits.

business_open_us(schedule, t) is the open time before t in integer microseconds: the same lookup as
business_open_seconds (0006) in bigint arithmetic, which costs a fraction of numeric's per row.

Revision ID: 0012_business_rollups
Revises: 0011_cube_rollups
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0012_business_rollups"
down_revision: str | None = "0011_cube_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = ("status", "priority", "channel", "category", "assigned_to")
CELL_KEY = ("org_id", "schedule_id", "metric", "grain", "bucket_start", *DIMENSIONS)

# An interval's microseconds are exact in date_part (double precision): spans are at most days long.
BUSINESS_OPEN_US = """
CREATE FUNCTION business_open_us(p_schedule bigint, p_at timestamptz) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT s.open_before_us
               + CAST(round(least(greatest(date_part('epoch', p_at - s.starts_at), 0),
                                  date_part('epoch', s.ends_at - s.starts_at)) * 1000000) AS bigint)
        FROM schedule_spans s
        WHERE s.schedule_id = p_schedule AND s.starts_at <= p_at
        ORDER BY s.starts_at DESC
        LIMIT 1
    ), 0)
$$"""


def upgrade() -> None:
    op.execute(BUSINESS_OPEN_US)
    op.create_table(
        "analytics_business_metrics",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("assigned_to", sa.String(length=200), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("sketch", postgresql.BYTEA(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_analytics_business_metrics_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_analytics_business_metrics_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_analytics_business_metrics_cell",
        "analytics_business_metrics",
        list(CELL_KEY),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    # Unfiltered reads (grain 0) from the index alone, as the calendar totals (0005).
    op.create_index(
        "ix_analytics_business_metrics_totals",
        "analytics_business_metrics",
        ["org_id", "schedule_id", "metric", "bucket_start"],
        postgresql_include=["count", "sum", "min", "max"],
        postgresql_where=sa.text("grain = 0"),
    )
    op.create_table(
        "analytics_business_rollups",
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_analytics_business_rollups_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_analytics_business_rollups_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", name=op.f("pk_analytics_business_rollups")),
    )


def downgrade() -> None:
    op.drop_table("analytics_business_rollups")
    op.drop_table("analytics_business_metrics")
    op.execute("DROP FUNCTION business_open_us(bigint, timestamptz)")
