"""Migration 0031 on a database with data: a ticket whose channel or category was changed before it
(no event said so) gets its change event at its last write, so its history reads the old value
before and the current one after; an unchanged ticket gets none."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from tests.conftest import scratch_database
from webapp.infra.migrations import downgrade, upgrade

CREATED = datetime(2026, 3, 1, 9, tzinfo=UTC)
CHANGED = datetime(2026, 3, 5, 12, tzinfo=UTC)


@pytest.fixture
def database_url(services):
    with scratch_database(services, "migration_dimension_change_events") as url:
        yield url


def _ticket(conn, org_id: int, channel: str, category: str) -> int:
    ticket_id = conn.execute(
        "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at, updated_at,"
        " reopen_count) VALUES (%s, 't', 'open', 'normal', 'email', 'billing', %s, %s, 0) RETURNING id",
        (org_id, CREATED, CREATED),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,"
        " category) VALUES (%s, %s, 'created', %s, 'open', 'normal', 'email', 'billing')",
        (org_id, ticket_id, CREATED),
    )
    # As a PATCH before 0031 did: the ticket's row changed, no event written.
    conn.execute(
        "UPDATE tickets SET channel = %s, category = %s, updated_at = %s WHERE id = %s",
        (channel, category, CHANGED, ticket_id),
    )
    return ticket_id


def test_tickets_changed_before_get_their_change_events(database_url):
    upgrade(database_url, "0030_deltas_every_dimension")
    plain = database_url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        org = conn.execute("INSERT INTO organizations (name, timezone) VALUES ('m', 'UTC') RETURNING id")
        org_id = org.fetchone()[0]
        moved = _ticket(conn, org_id, "chat", "billing")
        both = _ticket(conn, org_id, "web", "returns")
        kept = _ticket(conn, org_id, "email", "billing")
    upgrade(database_url, "0031_dimension_change_events")
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT ticket_id, event_type, occurred_at, channel, category, detail FROM ticket_events"
            " WHERE event_type IN ('channel_changed', 'category_changed') ORDER BY ticket_id, event_type"
        ).fetchall()
    assert rows == [
        (moved, "channel_changed", CHANGED, "chat", "billing", {"from": "email", "to": "chat"}),
        (both, "category_changed", CHANGED, "web", "returns", {"from": "billing", "to": "returns"}),
        (both, "channel_changed", CHANGED, "web", "returns", {"from": "email", "to": "web"}),
    ]
    assert kept not in {row[0] for row in rows}
    downgrade(database_url, "0030_deltas_every_dimension")
    with psycopg.connect(plain, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM ticket_events WHERE event_type IN ('channel_changed', 'category_changed')"
        )
        assert left.fetchone()[0] == 0
    upgrade(database_url, "head")
