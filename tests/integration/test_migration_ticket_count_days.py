"""Migration 0028 on a database with data: the hourly ticket counts there are are summed per UTC
day, every write of hours changes its day from then on (a tickets' insert, update and delete, hourly
rows deleted by hand), the organization's deletion takes its days along, and the downgrade takes the
table and its trigger away."""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

_TICKET = (
    "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at, updated_at,"
    " reopen_count) VALUES (%s, 's', 'open', 'high', 'email', %s, %s, now(), 0) RETURNING id"
)


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_ticket_count_days") as url:
        yield url


def _by_day(conn: psycopg.Connection, table: str, column: str) -> Counter:
    sums: Counter = Counter()
    for day, field, value, count in conn.execute(
        f"SELECT date_trunc('day', {column}, 'UTC'), field, value, count FROM {table}"
    ):
        sums[(day.date().isoformat(), field, value)] += count
    return +sums


def test_hourly_counts_are_summed_per_day_and_kept_so(database_url):
    upgrade(database_url, "0027_sla_verdict_turns")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        for at in ("2026-11-03 22:10+00", "2026-11-03 23:50+00", "2026-11-04 00:05+00"):
            conn.execute(_TICKET, (org, "billing", at))
    upgrade(database_url, "0028_ticket_count_days")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        days = _by_day(conn, "analytics_ticket_count_days", "day")
        assert days[("2026-11-03", "category", "billing")] == 2
        assert days[("2026-11-04", "category", "billing")] == 1
        assert days == _by_day(conn, "analytics_ticket_counts", "hour")
        late = conn.execute(_TICKET, (org, "tech", "2026-11-04 10:00+00")).fetchone()[0]
        conn.execute("UPDATE tickets SET category = 'moved' WHERE category = 'billing'")
        conn.execute("DELETE FROM tickets WHERE id = %s", (late,))
        conn.execute("DELETE FROM analytics_ticket_counts WHERE field = 'status'")
        days = _by_day(conn, "analytics_ticket_count_days", "day")
        assert days == _by_day(conn, "analytics_ticket_counts", "hour")
        assert days[("2026-11-03", "category", "moved")] == 2
        assert ("2026-11-04", "category", "tech") not in days
        assert not any(field == "status" for _, field, _ in days)
        conn.execute("DELETE FROM organizations WHERE id = %s", (org,))
        assert conn.execute("SELECT count(*) FROM analytics_ticket_count_days").fetchone()[0] == 0
    downgrade(database_url, "0027_sla_verdict_turns")
    with psycopg.connect(plain, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'analytics_ticket_count_days'"
        ).fetchone()[0]
        assert left == 0
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'analytics_ticket_count_days%%'"
        ).fetchone()[0]
        assert triggers == 0
