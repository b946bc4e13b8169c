"""a snapshot being computed cannot be stored fresh without a write that landed meanwhile

0007's trigger marks a stored snapshot stale when a write of events reaches its period, but only a
row not stale already (`NOT s.stale`): a snapshot job recomputing a stale row, or computing one for
the first time (no row to mark), could read before a write committed and then store its answer as
fresh. Now each write of events also takes a shared transaction-level advisory lock of its
organization (class "SNAP") as its trigger runs, and marks the rows it reaches `written` as well as
stale. A snapshot job, before it computes, takes that lock exclusively for a moment (so every write
whose trigger ran has committed, and is in what it reads), puts its token in the row's `computing`
and clears `written` (a first compute stores a placeholder row, definition_version 0), and commits.
Its upsert stores its answer only while its token is still the row's (a job that began later has
read more), with `stale` set to `written`: a write after its start leaves the row stale. The stale
mark itself is never cleared before an answer is stored, so a job that fails leaves it as it was.

Revision ID: 0034_snapshot_writers_lock
Revises: 0033_reuse_queued_jobs
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0034_snapshot_writers_lock"
down_revision: str | None = "0033_reuse_queued_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# int.from_bytes(b"SNAP"): webapp.analytics.snapshots.WRITERS_LOCK_CLASS.
LOCK_CLASS = 0x534E4150

MARK_SNAPSHOTS = f"""
CREATE OR REPLACE FUNCTION analytics_mark_stale_snapshots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_advisory_xact_lock_shared({LOCK_CLASS}, o.org_id)
        FROM (SELECT DISTINCT org_id FROM new_rows) o;
        UPDATE analytics_snapshots s SET stale = true, written = true
        FROM (SELECT org_id, min(occurred_at) AS lo, max(occurred_at) AS hi FROM new_rows GROUP BY 1) w
        WHERE s.org_id = w.org_id AND NOT (s.stale AND s.written)
          AND s.period_start <= w.hi AND s.period_end > w.lo;
    ELSE
        PERFORM pg_advisory_xact_lock_shared({LOCK_CLASS}, o.org_id)
        FROM (SELECT DISTINCT org_id FROM old_rows) o;
        UPDATE analytics_snapshots s SET stale = true, written = true
        FROM (SELECT org_id, min(occurred_at) AS lo, max(occurred_at) AS hi FROM old_rows GROUP BY 1) w
        WHERE s.org_id = w.org_id AND NOT (s.stale AND s.written)
          AND s.period_start <= w.hi AND s.period_end > w.lo;
    END IF;
    RETURN NULL;
END
$$
"""

# 0007's definition, for the downgrade.
OLD_MARK_SNAPSHOTS = """
CREATE OR REPLACE FUNCTION analytics_mark_stale_snapshots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE analytics_snapshots s SET stale = true
        FROM (SELECT org_id, min(occurred_at) AS lo, max(occurred_at) AS hi FROM new_rows GROUP BY 1) w
        WHERE s.org_id = w.org_id AND NOT s.stale AND s.period_start <= w.hi AND s.period_end > w.lo;
    ELSE
        UPDATE analytics_snapshots s SET stale = true
        FROM (SELECT org_id, min(occurred_at) AS lo, max(occurred_at) AS hi FROM old_rows GROUP BY 1) w
        WHERE s.org_id = w.org_id AND NOT s.stale AND s.period_start <= w.hi AND s.period_end > w.lo;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.add_column("analytics_snapshots", sa.Column("computing", postgresql.UUID(), nullable=True))
    op.add_column(
        "analytics_snapshots",
        sa.Column("written", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(MARK_SNAPSHOTS)


def downgrade() -> None:
    # Placeholders of first computes that never finished (definition_version 0) mean nothing to 0033.
    op.execute("DELETE FROM analytics_snapshots WHERE definition_version = 0")
    op.execute(OLD_MARK_SNAPSHOTS)
    op.drop_column("analytics_snapshots", "written")
    op.drop_column("analytics_snapshots", "computing")
