"""rollup grains and dirty hours

Rollups gain a grain (which dimensions a row keeps), and the raw tables mark the UTC hours whose
rollups a change makes stale, in the same transaction as the change. Reads treat a marked hour as
raw until a refresh rebuilds it, so a rollup-backed answer is exact whoever wrote the events
(API, import, COPY seed, SQL by hand).

Revision ID: 0002_rollups
Revises: 0001
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002_rollups"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLED = "('created', 'first_response', 'resolved')"
# Statement-level, so a COPY of a million events costs one aggregate over its transition table.
# Up to 64 distinct hours are marked one by one; beyond that, one span (a bulk load) is cheaper.
MARK_EVENTS = f"""
CREATE FUNCTION analytics_mark_event_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
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
        SELECT org_id, event_type, lo, hi + interval '1 hour' FROM spans WHERE n > 64;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
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
        SELECT org_id, event_type, lo, hi + interval '1 hour' FROM spans WHERE n > 64;
    END IF;
    RETURN NULL;
END
$$
"""
# Sentiment is the ticket's current score, so changing it moves the hour of its created event.
MARK_SENTIMENT = """
CREATE FUNCTION analytics_mark_sentiment_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)
    SELECT DISTINCT e.org_id, 'created', date_trunc('hour', e.occurred_at, 'UTC'),
           date_trunc('hour', e.occurred_at, 'UTC') + interval '1 hour'
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    JOIN ticket_events e ON e.ticket_id = n.id AND e.event_type = 'created'
    WHERE n.sentiment_score IS DISTINCT FROM o.sentiment_score;
    RETURN NULL;
END
$$
"""
TRIGGERS = (
    ("analytics_events_inserted", "ticket_events", "INSERT", "NEW TABLE AS new_rows", "event"),
    (
        "analytics_events_updated",
        "ticket_events",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "event",
    ),
    ("analytics_events_deleted", "ticket_events", "DELETE", "OLD TABLE AS old_rows", "event"),
    (
        "analytics_sentiment_updated",
        "tickets",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "sentiment",
    ),
)
FUNCTIONS = {"event": "analytics_mark_event_hours", "sentiment": "analytics_mark_sentiment_hours"}


def upgrade() -> None:
    op.add_column(
        "analytics_metrics",
        sa.Column("grain", sa.SmallInteger(), server_default=sa.text("31"), nullable=False),
    )
    # Nothing wrote rollups before this revision; whatever is there was never trusted.
    op.execute("DELETE FROM analytics_metrics")
    op.drop_index("uq_analytics_metrics_cell", table_name="analytics_metrics")
    op.create_index(
        "uq_analytics_metrics_cell",
        "analytics_metrics",
        [
            "org_id",
            "metric",
            "grain",
            "bucket_start",
            "status",
            "priority",
            "channel",
            "category",
            "assigned_to",
        ],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "analytics_rollup_dirty",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=24), nullable=False),
        sa.Column("lo", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hi", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_analytics_rollup_dirty_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_rollup_dirty")),
    )
    op.create_index(
        "ix_analytics_rollup_dirty_org_id", "analytics_rollup_dirty", ["org_id", "event_type", "lo"]
    )
    op.execute(MARK_EVENTS)
    op.execute(MARK_SENTIMENT)
    for name, table, event, referencing, kind in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTIONS[kind]}()"
        )
        # ALWAYS: a session in replica mode (a fast bulk load) must still mark what it changes.
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    # Events written before this revision: every hour that has some is stale until built.
    op.execute(
        "INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
        " SELECT org_id, event_type, date_trunc('hour', min(occurred_at), 'UTC'),"
        " date_trunc('hour', max(occurred_at), 'UTC') + interval '1 hour'"
        f" FROM ticket_events WHERE event_type IN {ROLLED} GROUP BY org_id, event_type"
    )


def downgrade() -> None:
    for name, table, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    for function in FUNCTIONS.values():
        op.execute(f"DROP FUNCTION {function}()")
    op.drop_index("ix_analytics_rollup_dirty_org_id", table_name="analytics_rollup_dirty")
    op.drop_table("analytics_rollup_dirty")
    op.execute("DELETE FROM analytics_metrics WHERE grain <> 31")
    op.drop_index("uq_analytics_metrics_cell", table_name="analytics_metrics")
    op.create_index(
        "uq_analytics_metrics_cell",
        "analytics_metrics",
        ["org_id", "metric", "bucket_start", "status", "priority", "channel", "category", "assigned_to"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.drop_column("analytics_metrics", "grain")
