"""The migration chain goes up to head and back down to base on an empty database."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from webapp.migrations import downgrade, upgrade

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
    url = make_url(services.database_url)
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    name = "analytics_migration_check"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_then_downgrade(empty_database_url):
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    inspector = inspect(engine)
    assert TABLES <= set(inspector.get_table_names())
    event_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("ticket_events")}
    assert ("org_id", "occurred_at") in event_indexes
    metric_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("analytics_metrics")}
    assert ("org_id", "metric", "bucket_start") in metric_indexes
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("analytics_snapshots")}
    assert ("org_id", "snapshot_type", "snapshot_date") in uniques
    engine.dispose()

    downgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
