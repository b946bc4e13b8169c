"""per-agent daily and monthly rollups of the agents report

agent_rollups holds, per organization, agent, local day (grain 1) or local month (grain 2) of a solve
and the local day of that ticket's next solve by the same agent (9999-12-31: none), the counters of
GET /analytics/agents (tickets solved, one-touch, reopened, SLA targets achieved, ratings, good
ratings) and the sketches of first-reply and resolution hours. Ratings rows carry no next solve.
agent_rollup_state says for which zone and SLA targets an organization's rows were built; reads and
writers use them only while those are the organization's, and read raw events otherwise.

Revision ID: 0014_agent_rollups
Revises: 0015_business_waits
Create Date: 2026-12-06 05:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0014_agent_rollups"
down_revision: str | None = "0015_business_waits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("solved", "one_touch", "reopened", "achieved", "ratings", "good")


def upgrade() -> None:
    op.create_table(
        "agent_rollups",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("bucket", sa.Date(), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("next_day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("first_sketch", postgresql.BYTEA(), nullable=True),
        sa.Column("resolution_sketch", postgresql.BYTEA(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agent_rollups_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "org_id", "grain", "bucket", "agent", "next_day", name=op.f("pk_agent_rollups")
        ),
    )
    op.create_table(
        "agent_rollup_state",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("targets", postgresql.JSONB(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_agent_rollup_state_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_agent_rollup_state")),
    )


def downgrade() -> None:
    op.drop_table("agent_rollup_state")
    op.drop_table("agent_rollups")
