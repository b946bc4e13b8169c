"""Migration 0015 on a database with solves: each solved event gets the spans tickets.history writes
for new ones (cut at the solve, reopens included), calendar hours untouched; the downgrade removes
them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy.engine import make_url

from webapp.infra.migrations import downgrade, upgrade
from webapp.tickets.history import time_in_statuses, unsolved_spans

T0 = datetime(2026, 3, 7, 22, 0, 0, 250_000, tzinfo=UTC)
H = timedelta(hours=1)
HISTORY = [
    (T0, "open"),
    (T0 + 2 * H, "pending"),
    (T0 + 5 * H + timedelta(microseconds=7), "on_hold"),
    (T0 + 6 * H, "resolved"),
    (T0 + 8 * H, "closed"),
    (T0 + 10 * H, "open"),
    (T0 + 11 * H, "resolved"),
]
SOLVES = (T0 + 6 * H, T0 + 11 * H)


@pytest.fixture
def database_url(services):
    url = make_url(services.database_url)
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    name = "analytics_migration_waits"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_solves_get_their_spans_and_lose_them_on_downgrade(database_url):
    upgrade(database_url, "0016_job_claim")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('w', 'UTC') RETURNING id"
        ).fetchone()[0]
        ticket = conn.execute(
            "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
            " updated_at, resolved_at, reopen_count) VALUES (%s, 's', 'resolved', 'high', 'email', 'x',"
            " %s, %s, %s, 1) RETURNING id",
            (org, T0, SOLVES[1], SOLVES[1]),
        ).fetchone()[0]
        for at, status in HISTORY:
            conn.execute(
                "INSERT INTO ticket_status_changes (org_id, ticket_id, status, at) VALUES (%s, %s, %s, %s)",
                (org, ticket, status, at),
            )
        for solve in SOLVES:
            conn.execute(
                "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority,"
                " channel, category, value, detail) VALUES (%s, %s, 'solved', %s, 'resolved', 'high',"
                " 'email', 'x', 100, %s)",
                (org, ticket, solve, Jsonb(time_in_statuses(HISTORY, solve))),
            )

    upgrade(database_url)
    with psycopg.connect(plain, autocommit=True) as conn:
        details = [
            row[0]
            for row in conn.execute(
                "SELECT detail FROM ticket_events WHERE event_type = 'solved' ORDER BY occurred_at"
            )
        ]
        for solve, detail in zip(SOLVES, details, strict=True):
            assert detail == {**time_in_statuses(HISTORY, solve), "spans": unsolved_spans(HISTORY, solve)}
        assert len(details[1]["spans"]) == 4

    downgrade(database_url, "0016_job_claim")
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute("SELECT occurred_at, detail FROM ticket_events ORDER BY occurred_at").fetchall()
        assert [(at, detail) for at, detail in rows] == [(s, time_in_statuses(HISTORY, s)) for s in SOLVES]
