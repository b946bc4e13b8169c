"""Migrations 0025 to 0027 on a database with data: every UTC day with rollups is marked for summing,
rollup writes mark their days from then on, SLA day counts lose valid_until and gain the unsettled
list, then trade it for the turns of their pending verdicts, and the downgrades take what they added
away."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

_ROW = (
    "INSERT INTO analytics_metrics (org_id, metric, grain, bucket_start, status, priority, channel,"
    " category, assigned_to, count, sum, min, max, updated_at)"
    " VALUES (%s, 'ticket_count', %s, %s, '', '', '', '', NULL, 3, NULL, NULL, NULL, now())"
)


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_metric_days") as url:
        yield url


def _marks(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT lo, hi FROM analytics_metric_day_marks ORDER BY lo")
    return [(lo.isoformat(), hi.isoformat()) for lo, hi in rows]


def test_rollup_days_are_marked_and_sla_counts_change_shape(database_url):
    upgrade(database_url, "0024_sla_verdict_days")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        conn.execute(_ROW, (org, 0, "2026-11-03 23:00+00"))
        conn.execute(_ROW, (org, 0, "2026-11-05 01:00+00"))
        conn.execute(_ROW, (org, 2, "2026-11-07 01:00+00"))  # a dimension's row alone marks nothing
        conn.execute(
            "INSERT INTO sla_verdict_day_builds (org_id, day, policy_key, counted_at, valid_until)"
            " VALUES (%s, '2026-11-03', 'k', now(), NULL)",
            (org,),
        )
    upgrade(database_url, "0026_sla_unsettled_tickets")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        assert _marks(conn) == [
            ("2026-11-03T00:00:00+00:00", "2026-11-04T00:00:00+00:00"),
            ("2026-11-05T00:00:00+00:00", "2026-11-06T00:00:00+00:00"),
        ]
        conn.execute("DELETE FROM analytics_metric_day_marks")
        # Rollup writes (any grain), deltas and dirty hours mark from now on.
        conn.execute("UPDATE analytics_metrics SET count = 4 WHERE grain = 2")
        conn.execute(
            "INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
            " VALUES (%s, 'created', '2026-11-10 05:00+00', '2026-11-10 06:00+00')",
            (org,),
        )
        assert _marks(conn) == [
            ("2026-11-07T00:00:00+00:00", "2026-11-08T00:00:00+00:00"),
            ("2026-11-10T05:00:00+00:00", "2026-11-10T06:00:00+00:00"),
        ]
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'sla_verdict_day_builds'"
            )
        }
        assert "valid_until" not in columns
        conn.execute(
            "INSERT INTO sla_verdict_day_unsettled (org_id, day, ticket_id) VALUES (%s, '2026-11-03', 1)",
            (org,),
        )
    downgrade(database_url, "0024_sla_verdict_days")
    with psycopg.connect(plain, autocommit=True) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s"
                " OR table_name = 'sla_verdict_day_unsettled'",
                ("analytics_metric_day%",),
            )
        }
        assert tables == set()
        # The counts made the new way are dropped, and their days marked for the old code to count.
        assert conn.execute("SELECT count(*) FROM sla_verdict_day_builds").fetchone()[0] == 0
        marked = [r[0].isoformat() for r in conn.execute("SELECT day FROM sla_verdict_day_marks")]
        assert marked == ["2026-11-03"]
        triggers = {
            r[0]
            for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'analytics_metric_days%%'")
        }
        assert triggers == set()


def test_unsettled_lists_give_way_to_turns_and_back(database_url):
    upgrade(database_url, "0026_sla_unsettled_tickets")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO sla_verdict_day_builds (org_id, day, policy_key, counted_at)"
            " VALUES (%s, '2026-11-03', 'k', now())",
            (org,),
        )
    upgrade(database_url, "0027_sla_verdict_turns")

    def columns(conn: psycopg.Connection, table: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            )
        ]

    with psycopg.connect(plain, autocommit=True) as conn:
        assert columns(conn, "sla_verdict_day_unsettled") == []
        assert columns(conn, "sla_verdict_days")[-2:] == ["first_reply_turns", "resolution_turns"]
    downgrade(database_url, "0026_sla_unsettled_tickets")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert columns(conn, "sla_verdict_day_unsettled") == ["org_id", "day", "ticket_id"]
        assert "first_reply_turns" not in columns(conn, "sla_verdict_days")
        # The counts of every ticket are dropped, and their days marked for 0026's code to count.
        assert conn.execute("SELECT count(*) FROM sla_verdict_day_builds").fetchone()[0] == 0
        marked = [r[0].isoformat() for r in conn.execute("SELECT day FROM sla_verdict_day_marks")]
        assert marked == ["2026-11-03"]
