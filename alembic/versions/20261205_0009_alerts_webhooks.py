"""alert rules, webhooks and their deliveries, scheduled reports

alert_rules hold a condition on one metric's closed buckets, the state the last evaluated bucket left
(ok or firing) and the instant up to which buckets were evaluated; alert_events record each
transition once (unique per rule and bucket).

webhooks are the organization's signed endpoints; webhook_deliveries hold each event's exact body
(its id is the body's id, the same on every retry) and where its attempts stand, one delivery per
webhook and source (an alert event, a report run); webhook_attempts log each POST.

report_schedules make an export on a five-field cron schedule in an IANA zone; report_runs follow each
run's export job until its report.ready delivery is made (or the run is skipped or failed).

Revision ID: 0009_alerts_webhooks
Revises: 0006_schedules_sla
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0009_alerts_webhooks"
down_revision: str | None = "0006_schedules_sla"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False)


def _org(table: str) -> list[Any]:
    return [
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f(f"fk_{table}_org_id_organizations"),
            ondelete="CASCADE",
        ),
    ]


def _stamps(table: str, *, updated: bool = True) -> list[Any]:
    columns: list[Any] = [
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f(f"fk_{table}_created_by_users"), ondelete="SET NULL"
        ),
    ]
    if updated:
        columns.append(
            sa.Column(
                "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
            )
        )
    return columns


def _webhooks() -> None:
    op.create_table(
        "webhooks",
        _id(),
        *_org("webhooks"),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        *_stamps("webhooks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_org_id", "webhooks", ["org_id", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        *_org("webhook_deliveries"),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("source_key", sa.String(length=100), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "event_type IN ('alert.firing', 'alert.resolved', 'report.ready', 'webhook.test')",
            name=op.f("ck_webhook_deliveries_event_type"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'succeeded', 'failed')", name=op.f("ck_webhook_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "webhook_id", "source_key", name=op.f("uq_webhook_deliveries_webhook_id_source_key")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_created", "webhook_deliveries", ["webhook_id", "created_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state IN ('pending', 'sending')"),
    )
    op.create_table(
        "webhook_attempts",
        _id(),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint("delivery_id", "number", name=op.f("uq_webhook_attempts_delivery_id_number")),
    )


def _alerts() -> None:
    op.create_table(
        "alert_rules",
        _id(),
        *_org("alert_rules"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("condition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("min_count", sa.BigInteger(), nullable=False),
        sa.Column("channels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("evaluated_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_evaluated_at", sa.DateTime(timezone=True), nullable=True),
        *_stamps("alert_rules"),
        sa.CheckConstraint(
            "granularity IN ('hourly', 'daily', 'weekly')", name=op.f("ck_alert_rules_granularity")
        ),
        sa.CheckConstraint("state IN ('ok', 'firing')", name=op.f("ck_alert_rules_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index("ix_alert_rules_org_id", "alert_rules", ["org_id", "id"])
    op.create_table(
        "alert_events",
        _id(),
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        *_org("alert_events"),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("change_pct", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('ok', 'firing')", name=op.f("ck_alert_events_state")),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alert_events_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
        sa.UniqueConstraint("rule_id", "bucket", name=op.f("uq_alert_events_rule_id_bucket")),
    )


def _reports() -> None:
    op.create_table(
        "report_schedules",
        _id(),
        *_org("report_schedules"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("export", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("export_params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("skip_if_empty", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        *_stamps("report_schedules"),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_report_schedules_webhook_id_webhooks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_schedules")),
    )
    op.create_index("ix_report_schedules_org_id", "report_schedules", ["org_id", "id"])
    op.create_index(
        "ix_report_schedules_due", "report_schedules", ["next_run_at"], postgresql_where=sa.text("enabled")
    )
    op.create_table(
        "report_runs",
        _id(),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        *_org("report_runs"),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name=op.f("ck_report_runs_trigger")),
        sa.CheckConstraint(
            "state IN ('running', 'delivered', 'skipped', 'failed')", name=op.f("ck_report_runs_state")
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["report_schedules.id"],
            name=op.f("fk_report_runs_schedule_id_report_schedules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_report_runs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_runs")),
    )
    op.create_index("ix_report_runs_schedule", "report_runs", ["schedule_id", "created_at"])
    op.create_index(
        "ix_report_runs_running", "report_runs", ["job_id"], postgresql_where=sa.text("state = 'running'")
    )


def upgrade() -> None:
    _webhooks()
    _alerts()
    _reports()


def downgrade() -> None:
    for table in (
        "report_runs",
        "report_schedules",
        "alert_events",
        "alert_rules",
        "webhook_attempts",
        "webhook_deliveries",
        "webhooks",
    ):
        op.drop_table(table)
