"""job waits: the queued jobs of an organization, oldest first, by a partial index

A worker that ends a job and gives its organization's share slot back hands the slot to the
organization's oldest job waiting for one (workers/claiming.py); the look-up rides in the statement
that gives the slot back. The index holds queued jobs only, so it stays small whatever an
organization's history, and the look-up reads a row or two of it.

Revision ID: 0019_job_waits
Revises: 0018_rollup_deltas
Create Date: 2026-12-05 08:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_job_waits"
down_revision: str | None = "0018_rollup_deltas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_jobs_org_queued ON jobs (org_id, created_at) WHERE state = 'queued'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_jobs_org_queued")
