"""deltas every dimension: imports append their rollup deltas at grain 31 only

An import used to append a delta per cell of every grain (seven of them, about 21 rows a ticket);
it now appends one per cell of all five dimensions and hour (grain 31, about 8.5 rows a ticket),
and readers and the fold sum those up to the grain they need. Deltas of the other grains that no
fold has moved yet are dropped here, and their hours marked dirty for every rolled event type, so
reads take those hours from raw events until beat's refresh rebuilds them: exact throughout.

Downgrade does the same to grain 31's deltas (the old readers ignore them).

Revision ID: 0030_deltas_every_dimension
Revises: 0029_report_webhook_gone
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030_deltas_every_dimension"
down_revision: str | None = "0029_report_webhook_gone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The event types rolled up when this was written (rollups.ROLLED_EVENT_TYPES).
EVENT_TYPES = (
    "'created', 'first_response', 'resolved', 'backlog', 'solved', 'reopened', 'next_reply', 'rated'"
)


def _drop(condition: str) -> None:
    op.execute(
        "INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
        " SELECT DISTINCT d.org_id, t.event_type, d.bucket_start, d.bucket_start + interval '1 hour'"
        f" FROM analytics_metric_deltas d CROSS JOIN unnest(ARRAY[{EVENT_TYPES}]) AS t(event_type)"
        f" WHERE {condition}"
    )
    op.execute(f"DELETE FROM analytics_metric_deltas WHERE {condition}")


def upgrade() -> None:
    _drop("grain <> 31")


def downgrade() -> None:
    _drop("grain = 31")
