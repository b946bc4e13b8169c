"""replies, satisfaction ratings, status history and the events derived from them

ticket_status_changes is each ticket's status history (the status from `at` until the next entry);
ticket_replies its agent and customer replies; ticket_ratings its standing satisfaction rating.

The history of existing tickets is back-filled from their events: the status each created,
status_changed and resolved event carries, consecutive repeats dropped. Their derived events
(tickets.history: backlog steps of +1/-1, one solved event per solve with the hours spent in each
unsolved status before it) are written from that history here, in SQL; they have no replies or
ratings yet, so no next_reply or rated event, and every solve is a one-touch one (a first response
counts as one agent reply). The dirty-hour trigger now marks the event types of the new metrics too
(reopened, backlog, solved, next_reply, rated), so the hours of the derived events written here, and
of the reopens already there, are rebuilt into rollups by the next refresh.

analytics_snapshots get their period as instants and a `stale` flag that a trigger on ticket_events
sets when a write of events reaches a stored period (a back-fill, an import, a late change); beat's
snapshot pass asks for stale snapshots again.

Revision ID: 0007_replies_metrics
Revises: 0009_alerts_webhooks
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_replies_metrics"
down_revision: str | None = "0009_alerts_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_EVENT_TYPES = (
    "'created', 'first_response', 'resolved', 'reopened', 'status_changed', 'priority_changed',"
    " 'assigned', 'sla_breached'"
)
NEW_EVENT_TYPES = OLD_EVENT_TYPES + ", 'backlog', 'solved', 'next_reply', 'rated'"
EVENT_CHECK = "ck_ticket_events_event_type"
STATUSES = "'open', 'pending', 'on_hold', 'resolved', 'closed'"
# The event types the rollups are built from: 0004's, and those of the support metrics.
OLD_ROLLED = "('created', 'first_response', 'resolved')"
NEW_ROLLED = (
    "('created', 'first_response', 'resolved', 'reopened', 'backlog', 'solved', 'next_reply', 'rated')"
)
# 0004's marking of dirty hours, for the event types `rolled`.
MARK_HOURS = """
CREATE OR REPLACE FUNCTION analytics_mark_event_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND current_setting('analytics.rollups_maintained', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        WITH hours AS (
            SELECT org_id, event_type, date_trunc('hour', occurred_at, 'UTC') AS h
            FROM new_rows WHERE event_type IN {rolled} GROUP BY 1, 2, 3
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
            WHERE o.event_type IN {rolled} AND EXISTS (SELECT 1 FROM organizations g WHERE g.id = o.org_id)
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
# A stored snapshot whose period a write of events reaches is stale until recomputed (beat asks for
# it again). Per statement: the span of the written (or removed) events of each organization.
MARK_SNAPSHOTS = """
CREATE FUNCTION analytics_mark_stale_snapshots() RETURNS trigger LANGUAGE plpgsql AS $$
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
SNAPSHOT_TRIGGERS = (
    ("analytics_snapshots_stale_inserted", "INSERT", "NEW TABLE AS new_rows"),
    ("analytics_snapshots_stale_deleted", "DELETE", "OLD TABLE AS old_rows"),
)
# Reopens were not rolled up before: their hours are marked for the first refresh to build.
MARK_REOPENS = """
INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)
SELECT org_id, 'reopened', date_trunc('hour', min(occurred_at), 'UTC'),
       date_trunc('hour', max(occurred_at), 'UTC') + interval '1 hour'
FROM ticket_events WHERE event_type = 'reopened' GROUP BY org_id
"""

HISTORY = """
INSERT INTO ticket_status_changes (org_id, ticket_id, status, at)
SELECT org_id, ticket_id, status, at FROM (
    SELECT org_id, ticket_id, status, at, n,
           lag(status) OVER (PARTITION BY ticket_id ORDER BY at, n) AS before
    FROM (
        SELECT e.org_id, e.ticket_id, e.occurred_at AS at, e.id AS n,
               CASE WHEN e.event_type = 'status_changed' THEN e.detail->>'to' ELSE e.status END AS status
        FROM ticket_events e
        WHERE e.event_type IN ('created', 'status_changed', 'resolved')
    ) raw
) h
WHERE before IS NULL OR before <> status
ORDER BY ticket_id, at, n
"""

SPANS = """
CREATE TEMP TABLE history_spans ON COMMIT DROP AS
SELECT h.org_id, h.ticket_id, h.status, h.at AS starts,
       lead(h.at) OVER w AS ends,
       lag(h.status) OVER w AS before,
       row_number() OVER w AS n
FROM ticket_status_changes h
WINDOW w AS (PARTITION BY h.ticket_id ORDER BY h.at, h.id)
"""

BACKLOG = """
INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,
                           category, assigned_to, value)
SELECT s.org_id, s.ticket_id, 'backlog', step.at, s.status, t.priority, t.channel, t.category,
       t.assigned_to, step.delta
FROM history_spans s
JOIN tickets t ON t.id = s.ticket_id
CROSS JOIN LATERAL (VALUES (s.starts, 1.0), (s.ends, -1.0)) AS step(at, delta)
WHERE s.status IN ('open', 'pending', 'on_hold') AND step.at IS NOT NULL
"""

SOLVED = """
INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,
                           category, assigned_to, value, detail)
SELECT x.org_id, x.ticket_id, 'solved', x.starts, x.status, t.priority, t.channel, t.category,
       t.assigned_to, 100.0,
       jsonb_build_object('open', x.open_h, 'pending', x.pending_h, 'on_hold', x.on_hold_h)
FROM (
    SELECT s.org_id, s.ticket_id, s.status, s.starts, s.before,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'open')
               OVER w, 0) AS open_h,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'pending')
               OVER w, 0) AS pending_h,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'on_hold')
               OVER w, 0) AS on_hold_h
    FROM history_spans s
    WINDOW w AS (PARTITION BY s.ticket_id ORDER BY s.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
) x
JOIN tickets t ON t.id = x.ticket_id
WHERE x.status IN ('resolved', 'closed') AND (x.before IS NULL OR x.before IN ('open', 'pending', 'on_hold'))
"""


def upgrade() -> None:
    op.create_table(
        "ticket_status_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_ticket_status_changes_status")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_ticket_status_changes_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_status_changes_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_status_changes")),
    )
    op.create_index("ix_ticket_status_changes_ticket_at", "ticket_status_changes", ["ticket_id", "at", "id"])
    op.create_table(
        "ticket_replies",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=16), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("author IN ('agent', 'customer')", name=op.f("ck_ticket_replies_author")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_ticket_replies_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_replies_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_replies")),
    )
    op.create_index("ix_ticket_replies_ticket_at", "ticket_replies", ["ticket_id", "at", "id"])
    op.create_table(
        "ticket_ratings",
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_ticket_ratings_rating")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_ticket_ratings_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_ratings_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_ratings")),
    )
    op.drop_constraint(op.f(EVENT_CHECK), "ticket_events", type_="check")
    op.create_check_constraint(op.f(EVENT_CHECK), "ticket_events", f"event_type IN ({NEW_EVENT_TYPES})")
    op.add_column("analytics_snapshots", sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("analytics_snapshots", sa.Column("period_end", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "analytics_snapshots",
        sa.Column("stale", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(
        "UPDATE analytics_snapshots SET period_start = CAST(data->>'start' AS timestamptz),"
        " period_end = CAST(data->>'end' AS timestamptz)"
    )
    op.create_index("ix_analytics_snapshots_org_period", "analytics_snapshots", ["org_id", "period_start"])
    op.execute(MARK_SNAPSHOTS)
    for name, operation, referencing in SNAPSHOT_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {operation} ON ticket_events REFERENCING {referencing}"
            " FOR EACH STATEMENT EXECUTE FUNCTION analytics_mark_stale_snapshots()"
        )
        op.execute(f"ALTER TABLE ticket_events ENABLE ALWAYS TRIGGER {name}")
    op.execute(MARK_HOURS.format(rolled=NEW_ROLLED))
    op.execute(MARK_REOPENS)
    op.execute(HISTORY)
    op.execute(SPANS)
    op.execute(BACKLOG)
    op.execute(SOLVED)
    op.execute("DROP TABLE history_spans")


def downgrade() -> None:
    for name, _, _ in SNAPSHOT_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON ticket_events")
    op.execute("DROP FUNCTION analytics_mark_stale_snapshots()")
    op.drop_index("ix_analytics_snapshots_org_period", "analytics_snapshots")
    for column in ("stale", "period_end", "period_start"):
        op.drop_column("analytics_snapshots", column)
    op.execute(MARK_HOURS.format(rolled=OLD_ROLLED))
    op.execute(
        "DELETE FROM analytics_metrics WHERE metric IN ('backlog', 'solved', 'reopens', 'next_reply_time',"
        " 'requester_wait_time', 'agent_wait_time', 'on_hold_time', 'csat', 'one_touch')"
    )
    op.execute("DELETE FROM analytics_rollup_dirty WHERE event_type NOT IN " + OLD_ROLLED)
    op.execute("DELETE FROM ticket_events WHERE event_type IN ('backlog', 'solved', 'next_reply', 'rated')")
    op.drop_constraint(op.f(EVENT_CHECK), "ticket_events", type_="check")
    op.create_check_constraint(op.f(EVENT_CHECK), "ticket_events", f"event_type IN ({OLD_EVENT_TYPES})")
    op.drop_table("ticket_ratings")
    op.drop_table("ticket_replies")
    op.drop_table("ticket_status_changes")
