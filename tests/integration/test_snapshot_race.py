"""A snapshot computed while writes land in its period is never stored as fresh without them.

The steps of a snapshot job (begin_compute, compute_snapshot, upsert_snapshot) run here on sessions
of their own, with a write of another connection placed at each point of a run where it could be
lost: in flight as the compute begins, committed between the compute's read and its upsert, and
into a period that has no snapshot yet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time

import pytest
from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from webapp.analytics import snapshots
from webapp.jobs.due_snapshots import is_stored
from webapp.models import AnalyticsSnapshot, Organization
from webapp.tickets.writes import create_ticket

DAY = date(2026, 11, 3)


@pytest.fixture
def org_id(make_live_tenant, live_app: Flask) -> Iterator[int]:
    tenant = make_live_tenant("Snapshot race")
    yield tenant.org_id
    session = live_app.extensions["db_sessionmaker"]()
    session.execute(delete(Organization).where(Organization.id == tenant.org_id))
    session.commit()
    session.close()


def _session(live_app: Flask) -> Session:
    return live_app.extensions["db_sessionmaker"]()


def _write(session: Session, org_id: int, hour: int) -> None:
    """A ticket created in DAY at `hour` UTC, left uncommitted."""
    org = session.get(Organization, org_id)
    assert org is not None
    create_ticket(session, org, {"created_at": datetime.combine(DAY, time(hour), UTC)})


def _stored(live_app: Flask, org_id: int) -> AnalyticsSnapshot:
    with _session(live_app) as session:
        row = session.scalar(
            select(AnalyticsSnapshot).where(
                AnalyticsSnapshot.org_id == org_id,
                AnalyticsSnapshot.snapshot_type == "daily",
                AnalyticsSnapshot.snapshot_date == DAY,
            )
        )
        assert row is not None
        return row


def _run_job(live_app: Flask, org_id: int) -> None:
    """A snapshot job's three steps, one after another."""
    with _session(live_app) as session:
        where = {"org_id": org_id, "snapshot_type": "daily", "snapshot_date": DAY}
        token = snapshots.begin_compute(session, **where)
        data = snapshots.compute_snapshot(session, **where)
        assert snapshots.upsert_snapshot(session, data=data, token=token, **where)
        session.commit()


def _commit_write(live_app: Flask, org_id: int, hour: int) -> None:
    with _session(live_app) as session:
        _write(session, org_id, hour)
        session.commit()


def test_a_write_in_flight_as_the_compute_begins_is_in_what_it_stores(live_app: Flask, org_id: int):
    _commit_write(live_app, org_id, 1)
    _run_job(live_app, org_id)
    # A later write makes the stored row stale; a second write, in flight, then finds it stale already
    # and leaves it as it is (the trigger marks only rows not stale): nothing on the row waits for it.
    _commit_write(live_app, org_id, 2)
    assert _stored(live_app, org_id).stale is True
    in_flight = _session(live_app)
    try:
        _write(in_flight, org_id, 3)
        finished = threading.Event()
        job = threading.Thread(target=lambda: (_run_job(live_app, org_id), finished.set()))
        job.start()
        # The recompute waits for the write to commit rather than reading without it.
        assert not finished.wait(0.6)
        in_flight.commit()
    finally:
        in_flight.close()
    job.join(30)
    assert finished.is_set()
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (3, False)


def test_a_write_committed_after_the_compute_read_leaves_the_row_stale(live_app: Flask, org_id: int):
    _commit_write(live_app, org_id, 1)
    where = {"org_id": org_id, "snapshot_type": "daily", "snapshot_date": DAY}
    with _session(live_app) as session:
        token = snapshots.begin_compute(session, **where)
        data = snapshots.compute_snapshot(session, **where)
        _commit_write(live_app, org_id, 2)  # lands after the read, before the upsert
        assert snapshots.upsert_snapshot(session, data=data, token=token, **where)
        session.commit()
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (1, True)
    # Beat's pass asks for it again, and that run stores the write.
    with _session(live_app) as session:
        assert snapshots.stale_snapshots(session, org_id=org_id) == [("daily", DAY)]
    _run_job(live_app, org_id)
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (2, False)


def test_a_first_compute_keeps_a_placeholder_that_a_write_marks(live_app: Flask, org_id: int):
    _commit_write(live_app, org_id, 1)
    where = {"org_id": org_id, "snapshot_type": "daily", "snapshot_date": DAY}
    with _session(live_app) as session:
        token = snapshots.begin_compute(session, **where)
        # Until the compute stores its answer, nothing is listed and beat counts the period as not stored.
        assert (
            snapshots.list_snapshots(
                session, org_id=org_id, snapshot_type="daily", start=DAY, end=date(2026, 11, 4)
            )
            == []
        )
        assert not is_stored(session, org_id, "daily", DAY)
        data = snapshots.compute_snapshot(session, **where)
        _commit_write(live_app, org_id, 2)
        assert snapshots.upsert_snapshot(session, data=data, token=token, **where)
        session.commit()
        assert is_stored(session, org_id, "daily", DAY)
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (1, True)
    assert stored.definition_version == snapshots.DEFINITION_VERSION


def test_a_compute_that_fails_leaves_the_row_as_stale_as_it_found_it(live_app: Flask, org_id: int):
    _commit_write(live_app, org_id, 1)
    _run_job(live_app, org_id)
    _commit_write(live_app, org_id, 2)
    where = {"org_id": org_id, "snapshot_type": "daily", "snapshot_date": DAY}
    with _session(live_app) as session:
        snapshots.begin_compute(session, **where)
        # The job fails here (cancelled, out of time, its worker lost for good): nothing stored.
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (1, True)
    with _session(live_app) as session:
        assert snapshots.stale_snapshots(session, org_id=org_id) == [("daily", DAY)]


def test_of_two_computes_of_one_period_the_later_begun_is_stored(live_app: Flask, org_id: int):
    _commit_write(live_app, org_id, 1)
    where = {"org_id": org_id, "snapshot_type": "daily", "snapshot_date": DAY}
    with _session(live_app) as first, _session(live_app) as second:
        first_token = snapshots.begin_compute(first, **where)
        early = snapshots.compute_snapshot(first, **where)
        _commit_write(live_app, org_id, 2)
        second_token = snapshots.begin_compute(second, **where)
        late = snapshots.compute_snapshot(second, **where)
        assert snapshots.upsert_snapshot(second, data=late, token=second_token, **where)
        second.commit()
        # The first, which read before the write, ends last: its answer is not stored.
        assert not snapshots.upsert_snapshot(first, data=early, token=first_token, **where)
        first.commit()
    stored = _stored(live_app, org_id)
    assert (stored.data["ticket_count"], stored.stale) == (2, False)
