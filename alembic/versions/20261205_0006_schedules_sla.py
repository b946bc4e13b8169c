"""business-hours schedules and SLA policies

schedules hold an organization's weekly business hours (IANA zone, intervals, holidays); one may be
the default. schedule_spans holds each schedule's open spans in UTC over the years 1900 to 2199 with
the open time before each span, written in the same transaction as every change of the schedule,
so that the open time before an instant (business_open_seconds) is one index lookup.

sla_policies holds an organization's SLA policy once it has been set; an organization without a
row has the default policy: organizations.sla_targets over the platform defaults, calendar clock,
no pauses, next_reply not measured. So existing answers do not change, and organizations made later
get the same default.

sla_clocks holds each ticket's running targets with the instant they will pass their limit;
sla_pending_tickets the tickets whose clocks must be worked out again. A trigger marks every ticket
inserted or updated, in the write's transaction, whatever wrote it (the API, an import, the seeder).
It is enabled ALWAYS, as the rollup marks are, so bulk writes that switch to replica mode still
mark their tickets and still skip the foreign-key triggers. sla_breaches records each run of a
target that passed its limit once, with an sla_breached ticket event at that instant.

The tickets that may hold a running target today (not solved, or not answered) are marked, so the
first sweeps build their clocks.

Revision ID: 0006_schedules_sla
Revises: 0005_rollup_totals
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0006_schedules_sla"
down_revision: str | None = "0005_rollup_totals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_TYPES = (
    "'created', 'first_response', 'resolved', 'reopened', 'status_changed', 'priority_changed', 'assigned'"
)
EVENT_CHECK = "ck_ticket_events_event_type"

# Exact (numeric, to the microsecond) so that a duration equal to its target compares equal.
BUSINESS_OPEN_SECONDS = """
CREATE FUNCTION business_open_seconds(p_schedule bigint, p_at timestamptz) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT (s.open_before_us
                + least(extract(epoch FROM p_at) - extract(epoch FROM s.starts_at),
                        extract(epoch FROM s.ends_at) - extract(epoch FROM s.starts_at)) * 1000000
               ) / 1000000
        FROM schedule_spans s
        WHERE s.schedule_id = p_schedule AND s.starts_at <= p_at
        ORDER BY s.starts_at DESC
        LIMIT 1
    ), 0)
$$"""

MARK_TICKETS = """
CREATE FUNCTION sla_mark_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sla_pending_tickets (ticket_id, org_id)
    SELECT id, org_id FROM new_rows
    ON CONFLICT (ticket_id) DO NOTHING;
    RETURN NULL;
END
$$"""


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("intervals", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("holidays", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_schedules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index("ix_schedules_org_id", "schedules", ["org_id", "id"])
    op.create_index(
        "uq_schedules_default", "schedules", ["org_id"], unique=True, postgresql_where=sa.text("is_default")
    )
    op.create_table(
        "schedule_spans",
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open_before_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_spans_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "starts_at", name=op.f("pk_schedule_spans")),
    )
    op.execute(BUSINESS_OPEN_SECONDS)
    op.create_table(
        "sla_policies",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=True),
        sa.Column("pause_statuses", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("targets", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_sla_policies_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_sla_policies_schedule_id_schedules")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_sla_policies")),
    )
    op.create_table(
        "sla_clocks",
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("breach_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_sla_clocks_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_sla_clocks_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_id", "metric", name=op.f("pk_sla_clocks")),
    )
    op.create_index("ix_sla_clocks_breach_at", "sla_clocks", ["breach_at"])
    op.create_table(
        "sla_pending_tickets",
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_sla_pending_tickets")),
    )
    op.create_index("ix_sla_pending_tickets_org_id", "sla_pending_tickets", ["org_id"])
    op.create_table(
        "sla_breaches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("breach_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target_hours", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_sla_breaches_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_sla_breaches_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_breaches")),
        sa.UniqueConstraint("ticket_id", "metric", "cycle_start", name=op.f("uq_sla_breaches_ticket_id")),
    )
    op.create_index("ix_sla_breaches_org_breach_at", "sla_breaches", ["org_id", "breach_at"])

    op.drop_constraint(op.f(EVENT_CHECK), "ticket_events", type_="check")
    op.create_check_constraint(
        op.f(EVENT_CHECK), "ticket_events", f"event_type IN ({EVENT_TYPES}, 'sla_breached')"
    )

    op.execute(MARK_TICKETS)
    for operation in ("INSERT", "UPDATE"):
        name = f"sla_mark_tickets_{operation.lower()}"
        op.execute(
            f"CREATE TRIGGER {name} AFTER {operation} ON tickets REFERENCING NEW TABLE AS new_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION sla_mark_tickets()"
        )
        op.execute(f"ALTER TABLE tickets ENABLE ALWAYS TRIGGER {name}")
    op.execute(
        "INSERT INTO sla_pending_tickets (ticket_id, org_id) SELECT id, org_id FROM tickets"
        " WHERE status NOT IN ('resolved', 'closed') OR first_response_at IS NULL"
    )


def downgrade() -> None:
    for operation in ("insert", "update"):
        op.execute(f"DROP TRIGGER sla_mark_tickets_{operation} ON tickets")
    op.execute("DROP FUNCTION sla_mark_tickets()")
    op.execute("DELETE FROM ticket_events WHERE event_type = 'sla_breached'")
    op.drop_constraint(op.f(EVENT_CHECK), "ticket_events", type_="check")
    op.create_check_constraint(op.f(EVENT_CHECK), "ticket_events", f"event_type IN ({EVENT_TYPES})")
    op.drop_table("sla_breaches")
    op.drop_table("sla_pending_tickets")
    op.drop_table("sla_clocks")
    op.drop_table("sla_policies")
    op.execute("DROP FUNCTION business_open_seconds(bigint, timestamptz)")
    op.drop_table("schedule_spans")
    op.drop_table("schedules")
