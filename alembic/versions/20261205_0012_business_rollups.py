"""business-hours rollups per schedule

analytics_business_metrics holds, per schedule, the hourly rollups of the duration metrics counted
in the schedule's open hours: the cells of analytics_metrics (grain, UTC hour, kept dimensions) with
the schedule as one more key. analytics_business_rollups says which version of each schedule they
were built for; reads use them only while that is the schedule's version, and read raw events
otherwise, so a changed schedule answers exactly from the moment it commits.

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


def upgrade() -> None:
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
    # Covering: a read of any grain without sketches is answered from the index alone (rows are
    # replaced, never updated in place, so the included columns cost no HOT updates).
    op.create_index(
        "uq_analytics_business_metrics_cell",
        "analytics_business_metrics",
        list(CELL_KEY),
        unique=True,
        postgresql_nulls_not_distinct=True,
        postgresql_include=["count", "sum", "min", "max"],
    )
    # The totals (grain 0, every unfiltered read) in a narrow index of their own, as the calendar's
    # (0005); reads name the grain as a literal so that any plan may use it.
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
