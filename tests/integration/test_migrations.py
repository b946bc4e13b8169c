"""The migration chain goes up to head and back down to base on an empty database."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

TABLES = {
    "organizations",
    "users",
    "tickets",
    "ticket_events",
    "jobs",
    "exports",
    "analytics_metrics",
    "analytics_snapshots",
}


@pytest.fixture
def empty_database_url(services):
    with scratch_database(services, "migration_check") as url:
        yield url


def test_upgrade_then_downgrade(empty_database_url):
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    inspector = inspect(engine)
    assert TABLES <= set(inspector.get_table_names())
    event_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("ticket_events")}
    assert ("org_id", "occurred_at") in event_indexes
    for partition in ("analytics_metrics_totals", "analytics_metrics_by_dimension"):
        metric_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes(partition)}
        assert ("org_id", "metric", "bucket_start") in metric_indexes, partition
    covering = {
        ix["name"]: ix["dialect_options"].get("postgresql_include")
        for ix in inspector.get_indexes("analytics_metrics_totals")
    }
    assert covering["ix_analytics_metrics_totals_read"] == ["grain", "count", "sum", "min", "max"]
    # One grain's hours, the dimension values and the numbers included (0023).
    by_dimension = {ix["name"]: ix for ix in inspector.get_indexes("analytics_metrics_by_dimension")}
    read = by_dimension["ix_analytics_metrics_by_dimension_read"]
    assert read["column_names"] == ["org_id", "metric", "grain", "bucket_start"]
    included = read["dialect_options"].get("postgresql_include")
    assert included == [
        "priority",
        "channel",
        "status",
        "category",
        "assigned_to",
        "count",
        "sum",
        "min",
        "max",
    ]
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("analytics_snapshots")}
    assert ("org_id", "snapshot_type", "snapshot_date") in uniques
    engine.dispose()

    downgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_rollup_rows_survive_partitioning_and_back(empty_database_url):
    """0005 moves every rollup row into its grain's partition, and its downgrade brings them back."""
    upgrade(empty_database_url, "0004_rollups_maintained")
    plain = empty_database_url.replace("+psycopg", "")
    rows = [
        ("ticket_count", 0, "", "", 3, None, None),
        ("response_time", 0, "", "", 2, 7.5, b"\x00\x01"),
        ("response_time", 2, "", "high", 1, 4.0, b"\x00\x02"),
        ("ticket_count", 16, "", "", 1, None, None),
    ]
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id"
        ).fetchone()[0]
        for metric, grain, status, priority, count, total, sketch in rows:
            conn.execute(
                "INSERT INTO analytics_metrics (org_id, metric, grain, bucket_start, status, priority,"
                " channel, category, assigned_to, count, sum, sketch)"
                " VALUES (%s, %s, %s, '2026-01-01T10:00Z', %s, %s, '', '', NULL, %s, %s, %s)",
                (org, metric, grain, status, priority, count, total, sketch),
            )
    select = (
        "SELECT metric, grain, status, priority, count, sum, sketch FROM analytics_metrics"
        " ORDER BY metric, grain"
    )
    expected = sorted((m, g, s, p, c, t, sk) for m, g, s, p, c, t, sk in rows)

    upgrade(empty_database_url)
    with psycopg.connect(plain) as conn:
        assert [tuple(r) for r in conn.execute(select)] == expected
        per_partition = dict(
            conn.execute(
                "SELECT tableoid::regclass::text, count(*) FROM analytics_metrics GROUP BY 1"
            ).fetchall()
        )
        assert per_partition == {"analytics_metrics_totals": 2, "analytics_metrics_by_dimension": 2}

    downgrade(empty_database_url, "0004_rollups_maintained")
    with psycopg.connect(plain) as conn:
        assert [tuple(r) for r in conn.execute(select)] == expected
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'analytics_metrics'").fetchone()
        assert kind == ("r",)
