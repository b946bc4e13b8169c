"""events whose writer maintains the rollups mark no dirty hours

A bulk import adds the rollups of the events it inserts to analytics_metrics itself, in the same
transaction (rollups.merge_new_events), so marking their hours dirty would only make a refresh
rebuild them again from every event of those hours. Around that one insert it sets the
transaction-local `analytics.rollups_maintained` to 'on', and the insert trigger then marks nothing.
Every other write (updates, deletes, inserts without the setting) marks its hours as before.

Adding to a rollup row updates it in place, an import touching tens of thousands of rows at once. With
free room in each page (fillfactor) the new row version stays in its page and no index changes (a
HOT update); a full page moves it and adds an entry to both indexes, several times slower.

Revision ID: 0004_rollups_maintained
Revises: 0003_revoked_tokens
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_rollups_maintained"
down_revision: str | None = "0003_revoked_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLED = "('created', 'first_response', 'resolved')"
# The marking of 0002_rollups, for inserted rows (new_rows) or deleted ones (old_rows).
MARK_NEW = f"""
        WITH hours AS (
            SELECT org_id, event_type, date_trunc('hour', occurred_at, 'UTC') AS h
            FROM new_rows WHERE event_type IN {ROLLED} GROUP BY 1, 2, 3
        ), spans AS (
            SELECT org_id, event_type, count(*) AS n, min(h) AS lo, max(h) AS hi FROM hours GROUP BY 1, 2
        )
        INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)
        SELECT h.org_id, h.event_type, h.h, h.h + interval '1 hour'
        FROM hours h JOIN spans s USING (org_id, event_type) WHERE s.n <= 64
        UNION ALL
        SELECT org_id, event_type, lo, hi + interval '1 hour' FROM spans WHERE n > 64;"""
MARK_OLD = f"""
        -- Events deleted with their organization leave nothing to rebuild.
        WITH hours AS (
            SELECT o.org_id, o.event_type, date_trunc('hour', o.occurred_at, 'UTC') AS h
            FROM old_rows o
            WHERE o.event_type IN {ROLLED} AND EXISTS (SELECT 1 FROM organizations g WHERE g.id = o.org_id)
            GROUP BY 1, 2, 3
        ), spans AS (
            SELECT org_id, event_type, count(*) AS n, min(h) AS lo, max(h) AS hi FROM hours GROUP BY 1, 2
        )
        INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)
        SELECT h.org_id, h.event_type, h.h, h.h + interval '1 hour'
        FROM hours h JOIN spans s USING (org_id, event_type) WHERE s.n <= 64
        UNION ALL
        SELECT org_id, event_type, lo, hi + interval '1 hour' FROM spans WHERE n > 64;"""
# Only inserts may skip: an update or delete changes events some rollup already counts.
SKIP_MAINTAINED = """
    IF TG_OP = 'INSERT' AND current_setting('analytics.rollups_maintained', true) = 'on' THEN
        RETURN NULL;
    END IF;"""


def _mark_event_hours(skip: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION analytics_mark_event_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{skip}
    IF TG_OP IN ('INSERT', 'UPDATE') THEN{MARK_NEW}
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN{MARK_OLD}
    END IF;
    RETURN NULL;
END
$$
"""


# Free room kept in analytics_metrics pages for updated row versions (the model says the same).
FILLFACTOR = 50


def upgrade() -> None:
    op.execute(_mark_event_hours(SKIP_MAINTAINED))
    # Pages written from now on keep the room; existing ones get it as rows move or a rewrite runs.
    op.execute(f"ALTER TABLE analytics_metrics SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    op.execute("ALTER TABLE analytics_metrics RESET (fillfactor)")
    op.execute(_mark_event_hours(""))
