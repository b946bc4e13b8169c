"""Migration 0030 on a database with data: imports' deltas of the old grains that no fold has moved
yet are dropped and their hours marked dirty for every rolled event type (reads take them from raw
events until a refresh rebuilds them); the downgrade does the same to grain 31's deltas."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.analytics.rollups import ROLLED_EVENT_TYPES
from webapp.infra.migrations import downgrade, upgrade

_DELTA = (
    "INSERT INTO analytics_metric_deltas (org_id, metric, grain, bucket_start, status, priority, channel,"
    " category, assigned_to, count, sum, min, max, sketch, updated_at)"
    " VALUES (%s, 'ticket_count', %s, %s, '', '', '', '', NULL, 1, NULL, NULL, NULL, NULL, now())"
)
_MARKS = "SELECT event_type, lo, hi FROM analytics_rollup_dirty WHERE org_id = %s ORDER BY event_type, lo"


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_deltas_every_dimension") as url:
        yield url


def test_old_grains_deltas_are_dropped_and_their_hours_marked(database_url):
    upgrade(database_url, "0029_report_webhook_gone")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute("INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id")
        org_id = org.fetchone()[0]
        for grain, hour in ((0, "2026-03-01T10:00Z"), (7, "2026-03-01T10:00Z"), (4, "2026-03-02T23:00Z")):
            conn.execute(_DELTA, (org_id, grain, hour))
    upgrade(database_url, "0030_deltas_every_dimension")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM analytics_metric_deltas").fetchone()[0] == 0
        marks = conn.execute(_MARKS, (org_id,)).fetchall()
        hours = sorted({(lo.isoformat(), hi.isoformat()) for _, lo, hi in marks})
        assert hours == [
            ("2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+00:00"),
            ("2026-03-02T23:00:00+00:00", "2026-03-03T00:00:00+00:00"),
        ]
        assert sorted({event_type for event_type, _, _ in marks}) == sorted(ROLLED_EVENT_TYPES)
        assert len(marks) == 2 * len(ROLLED_EVENT_TYPES)
        conn.execute("DELETE FROM analytics_rollup_dirty")
        conn.execute(_DELTA, (org_id, 31, "2026-03-05T01:00Z"))
        conn.execute(_DELTA, (org_id, 31, "2026-03-05T01:00Z"))
    downgrade(database_url, "0029_report_webhook_gone")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM analytics_metric_deltas").fetchone()[0] == 0
        marks = conn.execute(_MARKS, (org_id,)).fetchall()
        assert {(lo.isoformat(), hi.isoformat()) for _, lo, hi in marks} == {
            ("2026-03-05T01:00:00+00:00", "2026-03-05T02:00:00+00:00")
        }
        assert len(marks) == len(ROLLED_EVENT_TYPES)
    upgrade(database_url, "head")
