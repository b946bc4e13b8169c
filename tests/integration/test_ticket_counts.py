"""Distributions from ticket counts equal counts taken from the tickets, whoever changed them.

Tickets are written through the domain functions (with priority changes, resolutions and reopens),
then changed behind the application's back (SQL updates of category and assignee, a deleted
ticket, a bulk COPY): the trigger's deltas keep every distribution exact. Expected numbers are the
tickets themselves read back and counted in Python. Ranges start and end at local midnights of
every kind of zone (whole-hour, half-hour, 45-minute offsets, DST of an hour and of 30 minutes), so
partial UTC hours at the edges are read from the tickets.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.conftest import Tenant, committed_tenant
from tests.integration.test_rollups import _populate
from webapp.analytics import current, ticket_counts
from webapp.analytics.provenance import ReadOptions, reading
from webapp.models import Ticket

ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe")
FIELDS = ("status", "priority", "channel", "category", "assigned_to")
RANGES = ((datetime(2026, 2, 1), datetime(2026, 12, 1)), (datetime(2026, 3, 7), datetime(2026, 3, 10)))


@pytest.fixture(scope="module")
def tenant(base_app: Flask) -> Iterator[Tenant]:
    with committed_tenant(base_app, "Counts", "Asia/Kolkata") as (tenant, org, session):
        _populate(session, org, random.Random(21), 600)
        session.commit()
        yield tenant


@pytest.fixture
def session(base_app: Flask, tenant: Tenant) -> Iterator[Session]:
    s = base_app.extensions["db_sessionmaker"]()
    yield s
    s.rollback()
    s.close()


def _expected(session: Session, org_id: int, field: str, start: datetime, end: datetime) -> Counter:
    tickets = session.scalars(select(Ticket).where(Ticket.org_id == org_id)).all()
    return Counter(getattr(t, field) for t in tickets if start <= t.created_at < end)


def check_all(session: Session, org_id: int) -> None:
    for tz in ZONES:
        zone = ZoneInfo(tz)
        for first, last in RANGES:
            start, end = first.replace(tzinfo=zone), last.replace(tzinfo=zone)
            for field in FIELDS:
                with reading(ReadOptions()) as provenance:
                    answer = current.distribution(
                        session, org_id=org_id, field=field, start=start, end=end, filters={}
                    )
                assert provenance.source in ("rollup", "mixed")
                got = {v["value"]: v["count"] for v in answer["values"] if v["count"]}
                expected = _expected(session, org_id, field, start, end)
                assert got == dict(expected), (tz, first, field)
                assert answer["total"] == sum(expected.values())


def _days_equal_their_hours(session: Session, org_id: int) -> int:
    """The day sums (migration 0028) hold each UTC day's hourly counts; how many days there are."""
    hours: Counter = Counter()
    for hour, field, value, count in session.execute(
        text("SELECT hour, field, value, count FROM analytics_ticket_counts WHERE org_id = :o"), {"o": org_id}
    ):
        hours[(hour.astimezone(UTC).date(), field, value)] += count
    days: Counter = Counter()
    for day, field, value, count in session.execute(
        text("SELECT day, field, value, count FROM analytics_ticket_count_days WHERE org_id = :o"),
        {"o": org_id},
    ):
        assert day.astimezone(UTC).time() == datetime.min.time()
        days[(day.astimezone(UTC).date(), field, value)] += count
    assert +days == +hours
    return len({day for day, _, _ in +days})


def test_distributions_equal_the_tickets_after_every_kind_of_write(tenant: Tenant, session: Session):
    org_id = tenant.org_id
    check_all(session, org_id)
    ids = list(session.scalars(select(Ticket.id).where(Ticket.org_id == org_id).order_by(Ticket.id)))
    # Behind the application's back: bulk SQL updates, a delete, a COPY.
    session.execute(
        text("UPDATE tickets SET category = 'moved', assigned_to = NULL WHERE id = ANY(:ids)"),
        {"ids": ids[::7]},
    )
    session.execute(text("UPDATE tickets SET status = 'pending' WHERE id = ANY(:ids)"), {"ids": ids[1::9]})
    session.execute(
        text("UPDATE tickets SET created_at = created_at + interval '95 minutes' WHERE id = ANY(:ids)"),
        {"ids": ids[2::11]},
    )
    session.execute(text("DELETE FROM tickets WHERE id = ANY(:ids)"), {"ids": ids[3::13]})
    raw = session.connection().connection.driver_connection
    with raw.cursor().copy(
        "COPY tickets (org_id, subject, status, priority, channel, category, assigned_to, created_at,"
        " reopen_count) FROM STDIN"
    ) as copy:
        for i in range(40):
            at = datetime(2026, 3, 8, 5, tzinfo=UTC) + timedelta(minutes=37 * i)
            copy.write_row((org_id, "copied", "open", "high", "web", "bulk", None, at, 0))
    session.commit()
    check_all(session, org_id)
    assert _days_equal_their_hours(session, org_id) > 30

    before = session.execute(
        text("SELECT count(*) FROM analytics_ticket_counts WHERE org_id = :o"), {"o": org_id}
    ).scalar()
    assert ticket_counts.compact(session, org_id=org_id) > 0
    session.commit()
    after = session.execute(
        text(
            "SELECT count(*), count(DISTINCT (hour, field, value)) FROM analytics_ticket_counts"
            " WHERE org_id = :o"
        ),
        {"o": org_id},
    ).one()
    assert after[0] == after[1] < before  # one row per hour and value
    days = session.execute(
        text(
            "SELECT count(*), count(DISTINCT (day, field, value)) FROM analytics_ticket_count_days"
            " WHERE org_id = :o"
        ),
        {"o": org_id},
    ).one()
    assert days[0] == days[1]  # and per day and value
    _days_equal_their_hours(session, org_id)
    check_all(session, org_id)
    assert ticket_counts.compact(session, org_id=org_id) == 0

    session.execute(
        text("DELETE FROM analytics_ticket_counts WHERE org_id = :o AND field = 'status'"), {"o": org_id}
    )
    ticket_counts.rebuild(session, org_id=org_id)
    session.commit()
    _days_equal_their_hours(session, org_id)
    check_all(session, org_id)


def test_exact_and_filtered_distributions_read_the_tickets(tenant: Tenant, session: Session):
    zone = ZoneInfo("Asia/Kolkata")
    window = {"start": datetime(2026, 2, 1, tzinfo=zone), "end": datetime(2026, 12, 1, tzinfo=zone)}
    with reading(ReadOptions(rollups=False)) as provenance:
        exact = current.distribution(session, org_id=tenant.org_id, field="channel", filters={}, **window)
    assert provenance.source == "raw"
    with reading(ReadOptions()) as provenance:
        rolled = current.distribution(session, org_id=tenant.org_id, field="channel", filters={}, **window)
    assert rolled == exact
    with reading(ReadOptions()) as provenance:
        current.distribution(
            session, org_id=tenant.org_id, field="channel", filters={"priority": ["high"]}, **window
        )
    assert provenance.source == "raw"
