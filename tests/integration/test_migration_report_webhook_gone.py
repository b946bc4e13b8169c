"""Migration 0029 on a database with data: a report schedule's webhook may go (its webhook_id turns
NULL, whatever deletes the webhook), and the downgrade deletes the schedules left without one."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

_WEBHOOK = (
    "INSERT INTO webhooks (org_id, url, description, secret, enabled, consecutive_failures)"
    " VALUES (%s, 'http://127.0.0.1:9/in', '', 's', true, 0) RETURNING id"
)
_SCHEDULE = (
    "INSERT INTO report_schedules (org_id, name, cron, timezone, export, export_params, webhook_id,"
    " skip_if_empty, enabled, next_run_at) VALUES (%s, %s, '0 9 * * *', 'UTC', '{}', '{}', %s, false,"
    " true, now()) RETURNING id"
)


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_report_webhook_gone") as url:
        yield url


def test_a_schedules_webhook_may_go_and_the_downgrade_drops_the_schedules_left_without(database_url):
    upgrade(database_url, "0028_ticket_count_days")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute("INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id")
        org_id = org.fetchone()[0]
        kept_hook, gone_hook = (conn.execute(_WEBHOOK, (org_id,)).fetchone()[0] for _ in range(2))
        kept = conn.execute(_SCHEDULE, (org_id, "kept", kept_hook)).fetchone()[0]
        orphan = conn.execute(_SCHEDULE, (org_id, "orphan", gone_hook)).fetchone()[0]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("DELETE FROM webhooks WHERE id = %s", (gone_hook,))
    upgrade(database_url, "0029_report_webhook_gone")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DELETE FROM webhooks WHERE id = %s", (gone_hook,))
        rows = dict(conn.execute("SELECT id, webhook_id FROM report_schedules").fetchall())
        assert rows == {kept: kept_hook, orphan: None}
    downgrade(database_url, "0028_ticket_count_days")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert dict(conn.execute("SELECT id, webhook_id FROM report_schedules").fetchall()) == {
            kept: kept_hook
        }
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(_SCHEDULE, (org_id, "none", None))
    upgrade(database_url, "head")
