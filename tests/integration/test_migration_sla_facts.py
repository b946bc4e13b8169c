"""Migration 0022 on a database with data: every ticket gets its facts row with its own columns (those
with steps or replies keep their sums), later writes keep them, and the downgrade puts 0020's way
back (rows made at a ticket's first step or reply, moved with its creation instant)."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

COPIED = ("status", "priority", "channel", "category", "assigned_to", "first_response_at")


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_sla_facts") as url:
        yield url


def _ticket(conn: psycopg.Connection, org: int, status: str, assignee: str | None) -> int:
    return conn.execute(
        "INSERT INTO tickets (org_id, subject, status, priority, channel, category, assigned_to,"
        " created_at, updated_at, first_response_at, reopen_count)"
        " VALUES (%s, 's', %s, 'high', 'email', 'billing', %s, now() - interval '2 days', now(),"
        " CASE WHEN %s = 'closed' THEN now() - interval '1 day' END, 0) RETURNING id",
        (org, status, assignee, status),
    ).fetchone()[0]


def _step(conn: psycopg.Connection, org: int, ticket: int) -> None:
    conn.execute(
        "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority,"
        " channel, category, value) VALUES (%s, %s, 'backlog', now() - interval '2 days', 'open',"
        " 'high', 'email', 'billing', 1)",
        (org, ticket),
    )


def _facts(conn: psycopg.Connection) -> dict[int, tuple]:
    columns = ", ".join(f"f.{c} IS NOT DISTINCT FROM t.{c}" for c in COPIED)
    return {
        row[0]: tuple(row[1:])
        for row in conn.execute(
            f"SELECT f.ticket_id, f.open_open, {columns} FROM ticket_sla_facts f"
            " JOIN tickets t ON t.id = f.ticket_id"
        )
    }


def test_upgrade_gives_every_ticket_its_row_and_downgrade_goes_back(database_url):
    upgrade(database_url, "0021_event_values_in_index")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        stepped = _ticket(conn, org, "open", "ana")
        _step(conn, org, stepped)
        bare = _ticket(conn, org, "closed", None)
        assert {r[0] for r in conn.execute("SELECT ticket_id FROM ticket_sla_facts")} == {stepped}

    upgrade(database_url)
    same = (True,) * len(COPIED)
    with psycopg.connect(plain, autocommit=True) as conn:
        assert _facts(conn) == {stepped: (1, *same), bare: (0, *same)}
        # A new ticket has its row from its insert; an update copies its columns; a step adds to it.
        new = _ticket(conn, org, "pending", "bo")
        conn.execute(
            "UPDATE tickets SET priority = 'low', assigned_to = NULL, channel = 'chat' WHERE id = %s", (bare,)
        )
        _step(conn, org, new)
        assert _facts(conn) == {stepped: (1, *same), bare: (0, *same), new: (1, *same)}
        nullable = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns"
                " WHERE table_name = 'ticket_sla_facts' AND column_name = ANY(%s)",
                (list(COPIED),),
            )
        }
        assert nullable == {
            "status": "NO",
            "priority": "NO",
            "channel": "NO",
            "category": "NO",
            "assigned_to": "YES",
            "first_response_at": "YES",
        }

    downgrade(database_url, "0021_event_values_in_index")
    with psycopg.connect(plain, autocommit=True) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ticket_sla_facts'"
            )
        }
        assert not columns & set(COPIED)
        triggers = {
            r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'tickets'::regclass")
        }
        assert "ticket_sla_facts_moved" in triggers
        assert not {"ticket_sla_facts_ticket_inserted", "ticket_sla_facts_ticket_updated"} & triggers
        # 0020's way: no row at a ticket's insert, one at its first step; moved with its creation.
        later = _ticket(conn, org, "open", None)
        assert (
            conn.execute("SELECT count(*) FROM ticket_sla_facts WHERE ticket_id = %s", (later,)).fetchone()[0]
            == 0
        )
        _step(conn, org, later)
        conn.execute("UPDATE tickets SET created_at = created_at - interval '1 hour' WHERE id = %s", (later,))
        moved = conn.execute(
            "SELECT f.created_at = t.created_at FROM ticket_sla_facts f JOIN tickets t ON t.id = f.ticket_id"
            " WHERE f.ticket_id = %s",
            (later,),
        ).fetchone()[0]
        assert moved
