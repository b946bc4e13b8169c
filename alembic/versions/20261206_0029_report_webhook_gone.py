"""report webhook gone: deleting a webhook no longer waits for its users

DELETE /webhooks/{id} answered 409 while an alert rule or a report schedule used the webhook; the
contract's answer is 204. The webhook is now deleted whoever uses it: alert rules drop the channel,
and a report schedule that delivered to it keeps its settings, disabled, with no webhook (NULL here)
until it is given another. So report_schedules.webhook_id may be NULL, and its foreign key sets it
NULL when the webhook goes (whatever deletes it, an organization's deletion included).

Downgrade disables nothing back: schedules without a webhook cannot be kept under NOT NULL and are
deleted with their runs.

Revision ID: 0029_report_webhook_gone
Revises: 0028_ticket_count_days
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029_report_webhook_gone"
down_revision: str | None = "0028_ticket_count_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_report_schedules_webhook_id_webhooks"


def upgrade() -> None:
    op.drop_constraint(FK, "report_schedules", type_="foreignkey")
    op.create_foreign_key(FK, "report_schedules", "webhooks", ["webhook_id"], ["id"], ondelete="SET NULL")
    op.alter_column("report_schedules", "webhook_id", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM report_schedules WHERE webhook_id IS NULL")
    op.alter_column("report_schedules", "webhook_id", nullable=False)
    op.drop_constraint(FK, "report_schedules", type_="foreignkey")
    op.create_foreign_key(FK, "report_schedules", "webhooks", ["webhook_id"], ["id"])
