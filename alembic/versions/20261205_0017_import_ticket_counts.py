"""imports write their tickets' distribution counts once, summed over the whole batch

The tickets' insert trigger (migration 0011) unpivots the inserted tickets into (hour, field,
value) counts per statement. An import inserts its tickets in chunks of a thousand, spread over
weeks, so hardly two tickets of a chunk share an hour: the trigger wrote five rows a ticket, and
it was four fifths of the server's time inserting the tickets. An import now sets the
transaction-local `analytics.ticket_counts_written` to 'on' while it inserts them, the trigger then
counts nothing, and the import counts its whole batch in one statement (bulk_writer), with the
same rows summed further. Every other writer is counted as before.

Revision ID: 0017_import_ticket_counts
Revises: 0014_agent_rollups
Create Date: 2026-12-06 08:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_import_ticket_counts"
down_revision: str | None = "0014_agent_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("status", "priority", "channel", "category", "assigned_to")
SKIP = """    IF TG_OP = 'INSERT' AND current_setting('analytics.ticket_counts_written', true) = 'on' THEN
        RETURN NULL;
    END IF;
"""


def _unpivot(alias: str) -> str:
    pairs = ", ".join(f"('{name}', {alias}.{name})" for name in FIELDS)
    return f"CROSS JOIN LATERAL (VALUES {pairs}) AS f(field, value)"


def _function(skip: str) -> str:
    """analytics_count_tickets() as migration 0011 wrote it, with `skip` first."""
    return f"""
CREATE OR REPLACE FUNCTION analytics_count_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{skip}    IF TG_OP = 'INSERT' THEN
        INSERT INTO analytics_ticket_counts (org_id, hour, field, value, count)
        SELECT n.org_id, date_trunc('hour', n.created_at, 'UTC'), f.field, f.value, count(*)
        FROM new_rows n {_unpivot("n")} GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO analytics_ticket_counts (org_id, hour, field, value, count)
        SELECT o.org_id, date_trunc('hour', o.created_at, 'UTC'), f.field, f.value, -count(*)
        FROM old_rows o {_unpivot("o")}
        WHERE EXISTS (SELECT 1 FROM organizations g WHERE g.id = o.org_id) GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO analytics_ticket_counts (org_id, hour, field, value, count)
        SELECT org_id, hour, field, value, sum(n) FROM (
            SELECT o.org_id, date_trunc('hour', o.created_at, 'UTC') AS hour, f.field, f.value, -1 AS n
            FROM old_rows o {_unpivot("o")}
            UNION ALL
            SELECT n.org_id, date_trunc('hour', n.created_at, 'UTC'), f.field, f.value, 1
            FROM new_rows n {_unpivot("n")}
        ) d GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(_function(SKIP))


def downgrade() -> None:
    op.execute(_function(""))
