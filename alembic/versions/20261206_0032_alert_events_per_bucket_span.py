"""alert events per bucket span: a rule's events are unique by their bucket's start and end

A rule moved to a coarser granularity is evaluated from the start of the bucket in progress at the
new granularity (the day holding the hours it judged last), so an hourly event and a daily one may
share a start; their ends differ. The unique key (rule_id, bucket) becomes (rule_id, bucket,
bucket_end).

Revision ID: 0032_alert_events_bucket_span
Revises: 0031_dimension_change_events
Create Date: 2026-12-06 18:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0032_alert_events_bucket_span"
down_revision: str | None = "0031_dimension_change_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "uq_alert_events_rule_id_bucket"
NEW = "uq_alert_events_rule_id_bucket_bucket_end"


def upgrade() -> None:
    op.create_unique_constraint(NEW, "alert_events", ["rule_id", "bucket", "bucket_end"])
    op.drop_constraint(OLD, "alert_events", type_="unique")


def downgrade() -> None:
    # Of events sharing a start, the latest stays.
    op.execute(
        "DELETE FROM alert_events a USING alert_events b"
        " WHERE a.rule_id = b.rule_id AND a.bucket = b.bucket AND a.id < b.id"
    )
    op.create_unique_constraint(OLD, "alert_events", ["rule_id", "bucket"])
    op.drop_constraint(NEW, "alert_events", type_="unique")
