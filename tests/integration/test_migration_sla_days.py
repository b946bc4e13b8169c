"""Migration 0024 on a database with data: every day that has tickets is marked for counting, writes
to the facts mark their days from then on, and the downgrade takes the tables and triggers away."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

TABLES = ("sla_verdict_days", "sla_verdict_day_builds", "sla_verdict_day_marks")


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_sla_days") as url:
        yield url


def _ticket(conn: psycopg.Connection, org: int, created: str) -> int:
    return conn.execute(
        "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
        " updated_at, reopen_count) VALUES (%s, 's', 'open', 'high', 'email', 'billing', %s, now(), 0)"
        " RETURNING id",
        (org, created),
    ).fetchone()[0]


def _marks(conn: psycopg.Connection) -> list[tuple[int, str]]:
    return [(r[0], r[1].isoformat()) for r in conn.execute("SELECT org_id, day FROM sla_verdict_day_marks")]


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name = ANY(%s)", (list(TABLES),)
    )
    return {r[0] for r in rows}


def test_upgrade_marks_every_day_with_tickets_and_downgrade_takes_it_away(database_url):
    upgrade(database_url, "0023_dimension_rollups_covering")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        # 23:30 in Kathmandu on the 3rd is 17:45 UTC on the 3rd; 00:30 UTC on the 4th is its own day.
        _ticket(conn, org, "2026-11-03 23:30+05:45")
        _ticket(conn, org, "2026-11-03 10:00+00")
        moved = _ticket(conn, org, "2026-11-04 00:30+00")
    upgrade(database_url, "0024_sla_verdict_days")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert sorted(_marks(conn)) == [(org, "2026-11-03"), (org, "2026-11-04")]
        assert _tables(conn) == set(TABLES)
        conn.execute("DELETE FROM sla_verdict_day_marks")
        # A write to a ticket's facts marks its day, and the day it moved from.
        conn.execute("UPDATE tickets SET created_at = '2026-10-01 12:00+00' WHERE id = %s", (moved,))
        assert sorted(_marks(conn)) == [(org, "2026-10-01"), (org, "2026-11-04")]
        conn.execute("DELETE FROM sla_verdict_day_marks")
        conn.execute("DELETE FROM tickets WHERE id = %s", (moved,))
        assert _marks(conn) == [(org, "2026-10-01")]
    downgrade(database_url, "0023_dimension_rollups_covering")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert _tables(conn) == set()
        _ticket(conn, org, "2026-11-05 10:00+00")
        triggers = {
            r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sla_verdict%%'")
        }
        assert triggers == set()
