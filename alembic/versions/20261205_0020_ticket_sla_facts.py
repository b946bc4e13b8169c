"""ticket sla facts: each ticket's calendar SLA clock, kept by triggers, so compliance is one scan

SLA compliance on the calendar clock needs, per ticket, when it was first answered and how long it
spent in each unsolved status. Both used to be summed at every read from the ticket's backlog steps
and replies (a scan of the range's events and a reply lookup per ticket). ticket_sla_facts keeps
them per ticket, with the ticket's organization and creation instant, so that a read takes the
facts of a range's tickets by the same (org_id, created_at) range as the tickets themselves:

- first_agent_reply_at: the earliest public agent reply;
- <status>_us and <status>_open for each unsolved status: the sum of -step x the step's instant in
  microseconds over the ticket's backlog steps into and out of that status, and the sum of its
  steps (1 while the ticket is in it). Over a set of running statuses, the time elapsed is the sum of
  their _us, plus the instant it is now when one of them is open;
- entered_us: the latest step into an unsolved status (when the span still open began), in
  microseconds since the epoch.

Statement triggers on ticket_events (backlog steps) and ticket_replies keep them in the writer's
transaction, whoever writes (the API, an import, a COPY seed): an insert adds its steps' sums (and
moves entered_us and the first reply earlier or later as they say), a delete takes them off and
looks up what is left for the two instants; a statement trigger on tickets moves a ticket's facts
with its creation instant. Enabled ALWAYS: a bulk load in replica mode must keep them too. The facts
of existing tickets are built here from their events and replies.

Revision ID: 0020_ticket_sla_facts
Revises: 0019_job_waits
Create Date: 2026-12-05 13:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_ticket_sla_facts"
down_revision: str | None = "0019_job_waits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The unsolved statuses when this revision was written (webapp.core.vocabulary.UNSOLVED_STATUSES).
UNSOLVED = ("open", "pending", "on_hold")
# An instant as whole microseconds since the epoch, as the SLA reads position calendar instants.
_US = "CAST(round(date_part('epoch', {}) * 1000000) AS bigint)"


def _sums(rows: str) -> str:
    """Each unsolved status's (_us, _open) sums over the backlog steps of `rows`, as select items."""
    items = []
    for status in UNSOLVED:
        mine = f"FILTER (WHERE {rows}.status = '{status}')"
        step = f"CAST({rows}.value AS bigint)"
        items.append(f"coalesce(sum(-{step} * {_US.format(f'{rows}.occurred_at')}) {mine}, 0) AS {status}_us")
        items.append(f"coalesce(sum({step}) {mine}, 0) AS {status}_open")
    return ", ".join(items)


_STEP_COLUMNS = [c for s in UNSOLVED for c in (f"{s}_us", f"{s}_open")]
_COLUMNS = ", ".join(_STEP_COLUMNS)


def _applied(sign: str, source: str) -> str:
    """SET items adding (or taking off) `source`'s step sums to each facts row's."""
    return ", ".join(f"{c} = f.{c} {sign} {source}.{c}" for c in _STEP_COLUMNS)


_LATEST_ENTRY = (
    f"(SELECT max({_US.format('e.occurred_at')}) FROM ticket_events e WHERE e.ticket_id = f.ticket_id"
    " AND e.event_type = 'backlog' AND e.value > 0)"
)
_FIRST_REPLY = (
    "(SELECT min(r.at) FROM ticket_replies r WHERE r.ticket_id = f.ticket_id"
    " AND r.author = 'agent' AND r.public)"
)

STEPS_TRIGGER = f"""
CREATE FUNCTION ticket_sla_facts_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_sla_facts AS f (ticket_id, entered_us, {_COLUMNS}, org_id, created_at)
        SELECT g.*, t.org_id, t.created_at
        FROM (SELECT n.ticket_id, max({_US.format("n.occurred_at")}) FILTER (WHERE n.value > 0), {_sums("n")}
              FROM new_rows n WHERE n.event_type = 'backlog' GROUP BY n.ticket_id) g
        JOIN tickets t ON t.id = g.ticket_id
        ON CONFLICT (ticket_id) DO UPDATE SET
            entered_us = greatest(f.entered_us, excluded.entered_us), {_applied("+", "excluded")};
    ELSE
        UPDATE ticket_sla_facts AS f SET {_applied("-", "g")},
            entered_us = {_LATEST_ENTRY}
        FROM (SELECT o.ticket_id, {_sums("o")} FROM old_rows o WHERE o.event_type = 'backlog'
              GROUP BY o.ticket_id) g
        WHERE f.ticket_id = g.ticket_id;
    END IF;
    RETURN NULL;
END
$$
"""

REPLIES_TRIGGER = f"""
CREATE FUNCTION ticket_sla_facts_replies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_sla_facts AS f (ticket_id, first_agent_reply_at, org_id, created_at)
        SELECT g.*, t.org_id, t.created_at
        FROM (SELECT n.ticket_id, min(n.at) FROM new_rows n
              WHERE n.author = 'agent' AND n.public GROUP BY n.ticket_id) g
        JOIN tickets t ON t.id = g.ticket_id
        ON CONFLICT (ticket_id) DO UPDATE SET
            first_agent_reply_at = least(f.first_agent_reply_at, excluded.first_agent_reply_at);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ticket_sla_facts AS f (ticket_id, first_agent_reply_at, org_id, created_at)
        SELECT x.ticket_id, {_FIRST_REPLY.replace("f.ticket_id", "x.ticket_id")}, t.org_id, t.created_at
        FROM (SELECT o.ticket_id FROM old_rows o UNION SELECT n.ticket_id FROM new_rows n) x
        JOIN tickets t ON t.id = x.ticket_id
        ON CONFLICT (ticket_id) DO UPDATE SET first_agent_reply_at = excluded.first_agent_reply_at;
    ELSE
        UPDATE ticket_sla_facts AS f SET first_agent_reply_at = {_FIRST_REPLY}
        WHERE f.ticket_id IN (SELECT o.ticket_id FROM old_rows o);
    END IF;
    RETURN NULL;
END
$$
"""

MOVED_TRIGGER = """
CREATE FUNCTION ticket_sla_facts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ticket_sla_facts AS f SET created_at = n.created_at
    FROM new_rows n WHERE f.ticket_id = n.id AND f.created_at <> n.created_at;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    ("ticket_sla_facts_steps_inserted", "ticket_events", "INSERT", "NEW TABLE AS new_rows", "steps"),
    ("ticket_sla_facts_steps_deleted", "ticket_events", "DELETE", "OLD TABLE AS old_rows", "steps"),
    ("ticket_sla_facts_replies_inserted", "ticket_replies", "INSERT", "NEW TABLE AS new_rows", "replies"),
    (
        "ticket_sla_facts_replies_updated",
        "ticket_replies",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "replies",
    ),
    ("ticket_sla_facts_replies_deleted", "ticket_replies", "DELETE", "OLD TABLE AS old_rows", "replies"),
    ("ticket_sla_facts_moved", "tickets", "UPDATE", "NEW TABLE AS new_rows", "moved"),
)


def upgrade() -> None:
    status_columns = ", ".join(
        f"{s}_us bigint NOT NULL DEFAULT 0, {s}_open integer NOT NULL DEFAULT 0" for s in UNSOLVED
    )
    op.execute(
        "CREATE TABLE ticket_sla_facts (ticket_id bigint NOT NULL"
        " CONSTRAINT pk_ticket_sla_facts PRIMARY KEY"
        " CONSTRAINT fk_ticket_sla_facts_ticket_id_tickets REFERENCES tickets (id) ON DELETE CASCADE,"
        " org_id bigint NOT NULL, created_at timestamptz NOT NULL,"
        f" first_agent_reply_at timestamptz, entered_us bigint, {status_columns})"
    )
    op.execute("CREATE INDEX ix_ticket_sla_facts_org_created ON ticket_sla_facts (org_id, created_at)")
    op.execute(STEPS_TRIGGER)
    op.execute(REPLIES_TRIGGER)
    op.execute(MOVED_TRIGGER)
    for name, table, event, referencing, function in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION ticket_sla_facts_{function}()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    op.execute(
        f"INSERT INTO ticket_sla_facts (ticket_id, org_id, created_at, first_agent_reply_at, entered_us, {_COLUMNS})"
        " SELECT t.id, t.org_id, t.created_at, r.first_agent_reply_at, s.entered_us,"
        f" {', '.join(f'coalesce(s.{s}_us, 0), coalesce(s.{s}_open, 0)' for s in UNSOLVED)}"
        f" FROM (SELECT e.ticket_id, max({_US.format('e.occurred_at')}) FILTER (WHERE e.value > 0) AS entered_us,"
        f" {_sums('e')} FROM ticket_events e WHERE e.event_type = 'backlog' GROUP BY e.ticket_id) s"
        " FULL JOIN (SELECT ticket_id, min(at) AS first_agent_reply_at FROM ticket_replies"
        " WHERE author = 'agent' AND public GROUP BY ticket_id) r ON r.ticket_id = s.ticket_id"
        " JOIN tickets t ON t.id = coalesce(s.ticket_id, r.ticket_id)"
        " ORDER BY t.org_id, t.created_at"
    )


def downgrade() -> None:
    for name, table, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    op.execute("DROP FUNCTION ticket_sla_facts_steps()")
    op.execute("DROP FUNCTION ticket_sla_facts_replies()")
    op.execute("DROP FUNCTION ticket_sla_facts_moved()")
    op.execute("DROP TABLE ticket_sla_facts")
