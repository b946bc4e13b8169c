"""Migration 0006 on a database with data: existing answers keep the default policy, tickets that may
hold a running target are marked for the first sweep, and the downgrade removes it all."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_sla") as url:
        yield url


TICKETS = {
    # subject: (status, answered)
    "open": ("open", False),
    "pending answered": ("pending", True),
    "solved": ("resolved", True),
    "solved unanswered": ("closed", False),
}


def test_upgrade_marks_tickets_that_may_run_and_downgrade_removes_everything(database_url):
    upgrade(database_url, "0005_rollup_totals")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone, sla_targets) VALUES ('m', 'UTC', %s) RETURNING id",
            ('{"high": {"first_response_hours": 2}}',),
        ).fetchone()[0]
        ids = {}
        for subject, (status, answered) in TICKETS.items():
            ids[subject] = conn.execute(
                "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
                " updated_at, first_response_at, reopen_count)"
                " VALUES (%s, %s, %s, 'high', 'email', 'x', now(), now(), CASE WHEN %s THEN now() END, 0)"
                " RETURNING id",
                (org, subject, status, answered),
            ).fetchone()[0]

    upgrade(database_url)
    with psycopg.connect(plain, autocommit=True) as conn:
        marked = {row[0] for row in conn.execute("SELECT ticket_id FROM sla_pending_tickets")}
        assert marked == {ids["open"], ids["pending answered"], ids["solved unanswered"]}
        # No policy row: the organization keeps the default policy built from its own targets.
        assert conn.execute("SELECT count(*) FROM sla_policies").fetchone()[0] == 0
        conn.execute(
            "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority,"
            " channel, category) VALUES (%s, %s, 'sla_breached', now(), 'open', 'high', 'email', 'x')",
            (org, ids["open"]),
        )
        # A write marks its ticket in the same statement's transaction.
        conn.execute("DELETE FROM sla_pending_tickets")
        conn.execute("UPDATE tickets SET subject = 'changed' WHERE id = %s", (ids["solved"],))
        assert [r[0] for r in conn.execute("SELECT ticket_id FROM sla_pending_tickets")] == [ids["solved"]]

    downgrade(database_url, "0005_rollup_totals")
    with psycopg.connect(plain, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert not tables & {"schedules", "schedule_spans", "sla_policies", "sla_clocks", "sla_breaches"}
        assert (
            conn.execute("SELECT count(*) FROM ticket_events WHERE event_type = 'sla_breached'").fetchone()[0]
            == 0
        )
        functions = {
            r[0]
            for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE proname LIKE '%business%' OR proname LIKE 'sla_%'"
            )
        }
        assert functions == set()
        assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 4
