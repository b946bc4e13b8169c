"""Imports add their own rollups: afterwards the rollups are what a build from raw events writes.

An organization gets a history of tickets written one change at a time and its rollups built in bulk;
then batches are imported into the same hours (and into the open hour). After every import no hour
is dirty that was not dirty before, and every rollup row equals, cell by cell, the row a build from
the raw events writes (counts, min and max exactly, sums to 1e-9, sketches as bucket counts), and
the hourly totals equal plain SQL over the raw events. The same holds when a build, a refresh or
another writer runs at the same time, when long sketches are folded, and through the import job.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import delete, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.conftest import Tenant, _make_tenant, wait_for_job
from tests.integration import rollup_cells
from webapp.analytics import rollup_sql, rollups
from webapp.models import Organization, Ticket
from webapp.tickets import imports
from webapp.tickets.bulk import create_tickets_bulk, insert_planned
from webapp.tickets.bulk_writer import BULK_TABLES
from webapp.tickets.plans import plan_ticket
from webapp.tickets.row_checks import skip_row_checks
from webapp.tickets.rules import TicketError
from webapp.tickets.writes import create_ticket, update_ticket

FIRST = datetime(2026, 2, 20, tzinfo=UTC)
LAST = datetime(2026, 11, 10, tzinfo=UTC)
# Daylight-saving changes of New York in 2026: local days of 23 and 25 hours.
DST = (datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC))
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone", "web")
CATEGORIES = ("billing", "bug", "account")
AGENTS = (None, "ana", "ben", "chen")
ZONE = "America/New_York"
NEW_YORK = ZoneInfo(ZONE)


def _now() -> datetime:
    return datetime.now(UTC)


def _moment(rng: random.Random) -> datetime:
    if rng.random() < 0.3:
        return rng.choice(DST) + timedelta(seconds=rng.uniform(-30 * 3600, 30 * 3600))
    return FIRST + timedelta(seconds=rng.uniform(0, (LAST - FIRST).total_seconds()))


def _hours(rng: random.Random) -> float:
    """A response or resolution time: zero, minutes, hours or weeks (sketch keys far apart)."""
    return rng.choice((0.0, rng.uniform(0.001, 0.2), rng.expovariate(1 / 6), rng.uniform(50, 600)))


def _rows(rng: random.Random, count: int, *, near: datetime | None = None) -> list[dict[str, Any]]:
    """Import rows as the API takes them: ISO times (UTC, offsets, a few naive), every status."""
    latest = _now() - timedelta(minutes=1)
    out = []
    for _ in range(count):
        created = _moment(rng) if near is None else near + timedelta(seconds=rng.uniform(0, 3000))
        row: dict[str, Any] = {
            "created_at": created.isoformat(),
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(CHANNELS),
            "category": rng.choice(CATEGORIES),
        }
        if (agent := rng.choice(AGENTS)) is not None:
            row["assigned_to"] = agent
        if rng.random() < 0.85:
            row["sentiment_score"] = round(rng.uniform(-1, 1), 3)
        kind = rng.random()
        if kind < 0.75:
            responded = min(created + timedelta(hours=_hours(rng)), latest)
            row["first_response_at"] = responded.astimezone(rng.choice((UTC, NEW_YORK))).isoformat()
            if kind < 0.5:
                row["resolved_at"] = min(responded + timedelta(hours=_hours(rng)), latest).isoformat()
                row["status"] = rng.choice(("resolved", "closed"))
        elif kind < 0.82:
            row["status"] = "closed"  # resolved now: the open hour
        elif kind < 0.9:
            row["status"] = rng.choice(("pending", "on_hold"))
        out.append(row)
    # Wall-clock times in the organization's zone, away from its clock changes.
    out += [{"created_at": "2026-06-15T10:20:00"}, {"created_at": "2026-09-01T23:59:59", "status": "pending"}]
    return out


def _history(session: Session, org: Organization, rng: random.Random, count: int) -> list[int]:
    """Tickets written one change at a time, as the API writes them; their ids."""
    ids = []
    for _ in range(count):
        created = _moment(rng)
        fields: dict[str, Any] = {
            "created_at": created,
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(CHANNELS),
            "category": rng.choice(CATEGORIES),
            "assigned_to": rng.choice(AGENTS),
            "sentiment_score": None if rng.random() < 0.15 else round(rng.uniform(-1, 1), 3),
        }
        ticket = create_ticket(session, org, fields, now=_now()).ticket
        at = created + timedelta(minutes=rng.uniform(1, 300))
        if rng.random() < 0.3:
            update_ticket(session, org, ticket, {"priority": rng.choice(PRIORITIES)}, now=at)
        if rng.random() < 0.8:
            update_ticket(session, org, ticket, {"first_response_at": at}, now=at)
            if rng.random() < 0.6:
                at += timedelta(minutes=rng.uniform(1, 4000))
                update_ticket(session, org, ticket, {"status": "resolved", "resolved_at": at}, now=at)
        ids.append(ticket.id)
    return ids


class History:
    """A committed organization with tickets and built rollups; sessions on the real database."""

    def __init__(self, app: Flask, tenant: Tenant, ticket_ids: list[int]) -> None:
        self.app = app
        self.tenant = tenant
        self.org_id = tenant.org_id
        self.ticket_ids = ticket_ids

    def session(self) -> Session:
        return self.app.extensions["db_sessionmaker"]()

    def import_rows(self, session: Session, rows: list[dict[str, Any]]) -> imports.ImportReport:
        """Import `rows` in `session`, not committed."""
        org = session.get(Organization, self.org_id)
        assert org is not None
        report, _, _ = imports.import_rows(session, org, rows)
        return report

    def change_sentiment(self, index: int, value: float) -> None:
        """A committed write by someone else: it marks the hour of the ticket's creation dirty."""
        with self.session() as session:
            org = session.get(Organization, self.org_id)
            ticket = session.get(Ticket, self.ticket_ids[index])
            assert org is not None
            assert ticket is not None
            update_ticket(session, org, ticket, {"sentiment_score": value})
            session.commit()

    def assert_rollups_are_a_build(self, *, skip_dirty: bool = False) -> int:
        """Every rollup row equals the build's from raw events (cells of dirty hours aside if asked)."""
        with self.session() as session:
            marks = rollup_cells.marked(session, self.org_id)
            if not skip_dirty:
                assert marks == []
            skip = rollup_cells.covered_by(marks) if skip_dirty else (lambda key: False)
            # What readers see: the rows plus the imports' deltas.
            actual = rollup_cells.answered(session, self.org_id)
            built = rollup_cells.built_from_raw(
                session, self.org_id, FIRST - timedelta(days=3), _now() + timedelta(hours=1)
            )
            compared = rollup_cells.assert_same_cells(actual, built, skip=skip)
            _assert_hourly_totals_are_raw_sql(session, self.org_id, actual, skip)
            # Folded into the rows (then undone), the deltas leave the same cells and none of theirs.
            nested = session.begin_nested()
            rollups.fold_deltas(session, org_id=self.org_id)
            assert rollup_cells.cells(session, self.org_id, table="analytics_metric_deltas") == {}
            rollup_cells.assert_same_cells(rollup_cells.cells(session, self.org_id), built, skip=skip)
            nested.rollback()
            session.rollback()
        return compared


@pytest.fixture
def history(live_app: Flask) -> Iterator[History]:
    tenant = _make_tenant(live_app, "Import rollups", ZONE)
    session = live_app.extensions["db_sessionmaker"]()
    try:
        org = session.get(Organization, tenant.org_id)
        assert org is not None
        ids = _history(session, org, random.Random(5), 120)
        session.commit()
        rollups.build(session, org_id=tenant.org_id, start=FIRST - timedelta(days=3), end=_now())
        session.commit()
        yield History(live_app, tenant, ids)
    finally:
        session.rollback()
        session.execute(delete(Organization).where(Organization.id == tenant.org_id))
        session.commit()
        session.close()


# The hourly totals of each metric straight from the raw tables: the definitions, written out again.
RAW_HOURLY = """
SELECT 'ticket_count' AS metric, date_trunc('hour', occurred_at, 'UTC') AS h, count(*) AS n,
       NULL::float8 AS s, NULL::float8 AS lo, NULL::float8 AS hi
FROM ticket_events WHERE org_id = :o AND event_type = 'created' GROUP BY 2
UNION ALL
SELECT 'response_time', date_trunc('hour', occurred_at, 'UTC'), count(value), sum(value),
       min(value), max(value)
FROM ticket_events WHERE org_id = :o AND event_type = 'first_response' GROUP BY 2
UNION ALL
SELECT 'resolution_time', date_trunc('hour', occurred_at, 'UTC'), count(value), sum(value),
       min(value), max(value)
FROM ticket_events WHERE org_id = :o AND event_type = 'resolved' GROUP BY 2
UNION ALL
SELECT 'sentiment_score', date_trunc('hour', e.occurred_at, 'UTC'), count(t.sentiment_score),
       sum(t.sentiment_score), min(t.sentiment_score), max(t.sentiment_score)
FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
WHERE e.org_id = :o AND e.event_type = 'created' GROUP BY 2 HAVING count(t.sentiment_score) > 0
UNION ALL
SELECT m.metric, date_trunc('hour', e.occurred_at, 'UTC'),
       CASE WHEN m.v IS NULL THEN count(*) ELSE count(m.v) END, sum(m.v), min(m.v), max(m.v)
FROM ticket_events e CROSS JOIN LATERAL (VALUES
    ('backlog', 'backlog', e.value),
    ('solved', 'solved', NULL::float8),
    ('reopens', 'reopened', NULL::float8),
    ('next_reply_time', 'next_reply', e.value),
    ('requester_wait_time', 'solved',
     CAST(e.detail->>'open' AS float8) + CAST(e.detail->>'on_hold' AS float8)),
    ('agent_wait_time', 'solved', CAST(e.detail->>'pending' AS float8)),
    ('on_hold_time', 'solved', CAST(e.detail->>'on_hold' AS float8)),
    ('csat', 'rated', e.value),
    ('one_touch', 'solved', e.value)
) AS m(metric, event_type, v)
WHERE e.org_id = :o AND e.event_type = m.event_type GROUP BY m.metric, 2, m.v IS NULL
"""
# Metrics that count events: their rollup rows carry no sketch.
COUNTED = ("ticket_count", "solved", "reopens")


def _assert_hourly_totals_are_raw_sql(
    session: Session,
    org_id: int,
    actual: dict[rollup_cells.CellKey, rollup_cells.Cell],
    skip: Callable[[rollup_cells.CellKey], bool],
) -> None:
    raw = {(row.metric, row.h): row for row in session.execute(text(RAW_HOURLY), {"o": org_id})}
    totals = {(key[0], key[2]): cell for key, cell in actual.items() if key[1] == 0 and not skip(key)}
    assert set(totals) == {key for key in raw if not skip((key[0], 0, key[1]))}
    for key, cell in totals.items():
        row = raw[key]
        assert (cell.count, cell.min, cell.max) == (row.n, row.lo, row.hi), key
        assert sum(cell.sketch.values()) == (0 if key[0] in COUNTED else row.n), key
        if row.s is not None:
            assert cell.sum == pytest.approx(row.s, rel=1e-9, abs=1e-9), key


def _in_thread(work: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _waits_for_rollup_lock(session: Session, org_id: int, timeout: float = 30) -> None:
    """Until some other session waits for the organization's rollup lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND classid = CAST(:cls AS oid) AND objid = CAST(:org AS oid)"
            ),
            {"cls": rollups.LOCK_CLASS, "org": org_id},
        ).scalar()
        session.rollback()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("nobody waited for the rollup lock")


# --- imports into hours that hold rollups -----------------------------------------------------------


def test_imports_add_exactly_what_a_build_from_raw_events_writes(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks: the writer thread writes several while the rows are checked.
    monkeypatch.setattr(imports, "WRITE_CHUNK", 70)
    rng = random.Random(11)
    # Someone else's write leaves an hour dirty; the imports must neither clear nor add marks.
    history.change_sentiment(0, -0.75)
    with history.session() as session:
        before = rollup_cells.marked(session, history.org_id)
        cells_before = len(rollup_cells.answered(session, history.org_id))
    assert len(before) == 1

    batches = (_rows(rng, 300), _rows(rng, 250), _rows(rng, 80, near=DST[1]))
    for number, batch in enumerate(batches, start=1):
        with history.session() as session:
            report = history.import_rows(session, batch)
            session.commit()
            assert report.imported == len(batch)
            assert rollup_cells.marked(session, history.org_id) == before
        # After the first import and after the last (the whole comparison is the test's main cost).
        if number in (1, len(batches)):
            history.assert_rollups_are_a_build(skip_dirty=True)

    with history.session() as session:
        assert len(rollup_cells.answered(session, history.org_id)) > cells_before
        # A reconcile rebuilds from raw events and counts the rows that differed: only the dirty
        # hour's sentiment, one row per grain holding the changed ticket.
        stats = rollups.reconcile(
            session, org_id=history.org_id, start=FIRST - timedelta(days=3), end=_now() + timedelta(hours=1)
        )
        assert (stats.written, stats.removed) == (len(rollup_sql.GRAINS), 0)
        session.rollback()
        # The other writer's hour is rebuilt by a refresh as usual, and then every hour is exact.
        assert rollups.refresh(session, org_id=history.org_id, now=_now() + timedelta(hours=2))
        session.commit()
    assert history.assert_rollups_are_a_build() > 1000


def test_rollup_backed_reads_equal_raw_reads_after_imports(history: History) -> None:
    from tests.integration.test_rollups import _aggregate, _assert_cells_equal, _assert_series_equal, series

    with history.session() as session:
        history.import_rows(session, _rows(random.Random(12), 400))
        session.commit()
        sources = set()
        for metric in ("ticket_count", "response_time", "resolution_time", "sentiment_score"):
            for tz in ("UTC", ZONE, "Asia/Kolkata"):
                rolled, raw, source = series(session, history.org_id, metric, "daily", tz)
                _assert_series_equal(rolled, raw, f"{metric} {tz}")
                sources.add(source)
            rolled, raw, _ = series(session, history.org_id, metric, "weekly", ZONE, {"assigned_to": [None]})
            _assert_series_equal(rolled, raw, f"{metric} unassigned")
        # Hourly by the grain's own dimensions: each rollup row and each unfolded delta comes as it
        # is (no GROUP BY), and the rows of one hour are added up in Python.
        for metric in ("ticket_count", "response_time"):
            for group_by in ((), ("channel",)):
                rolled, raw, _ = _aggregate(session, history.org_id, metric, group_by, "hourly", "UTC")
                _assert_cells_equal(rolled, raw, f"{metric} hourly by {group_by} after imports")
        assert "mixed" in sources


def test_long_sketches_are_folded_and_short_ones_concatenated(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fold past 4 pairs: dense hours of the imports below fold, sparse ones keep repeated keys.
    monkeypatch.setattr(rollup_sql, "FOLD_SKETCH_BYTES", 4 * 6)
    rng = random.Random(13)
    dense = datetime(2026, 5, 5, 14, tzinfo=UTC)
    for rows in (_rows(rng, 60, near=dense), _rows(rng, 60, near=dense), _rows(rng, 40)):
        for row in rows[: len(rows) // 2]:
            row["sentiment_score"] = 0.5  # one key many times
        with history.session() as session:
            history.import_rows(session, rows)
            session.commit()
    history.assert_rollups_are_a_build()
    with history.session() as session:
        rollups.fold_deltas(session, org_id=history.org_id)
        session.commit()
        stored = rollup_cells.cells(session, history.org_id)
    long = [cell for cell in stored.values() if cell.pairs > 4]
    assert long
    # A sketch past the length holds each key once; the build's own sketches do anyway.
    assert all(cell.pairs == len(cell.sketch) for cell in long)


# --- concurrency --------------------------------------------------------------------------------


def test_a_refresh_waits_for_an_import_and_then_reads_its_events(history: History) -> None:
    rng = random.Random(14)
    importing = history.session()
    try:
        history.import_rows(importing, _rows(rng, 300))
        # The import holds the rollup lock until it commits.
        with history.session() as other:
            assert rollups.lock(other, history.org_id, wait=False) is False
            other.rollback()
        # Meanwhile another writer dirties an hour, and a refresh wants to rebuild it.
        history.change_sentiment(1, 0.125)

        def refresh() -> None:
            with history.session() as session:
                assert rollups.refresh(session, org_id=history.org_id, now=_now() + timedelta(hours=2))
                session.commit()

        thread, errors = _in_thread(refresh)
        with history.session() as watcher:
            _waits_for_rollup_lock(watcher, history.org_id)
        assert thread.is_alive()
        importing.commit()
    finally:
        importing.close()
    thread.join(60)
    assert not errors, errors
    history.assert_rollups_are_a_build()


def test_an_import_waits_for_a_running_build_and_adds_on_top_of_it(history: History) -> None:
    rng = random.Random(15)
    history.change_sentiment(2, 0.875)
    building = history.session()
    try:
        # A refresh has rebuilt the dirty hour from what it could see, and has not committed yet.
        assert rollups.refresh(building, org_id=history.org_id, now=_now() + timedelta(hours=2))

        def run_import() -> None:
            with history.session() as session:
                history.import_rows(session, _rows(rng, 300))
                session.commit()

        thread, errors = _in_thread(run_import)
        with history.session() as watcher:
            _waits_for_rollup_lock(watcher, history.org_id)
        assert thread.is_alive()
        building.commit()
    finally:
        building.close()
    thread.join(60)
    assert not errors, errors
    history.assert_rollups_are_a_build()


def test_marks_another_writer_commits_during_an_import_survive_it(history: History) -> None:
    importing = history.session()
    try:
        history.import_rows(importing, _rows(random.Random(16), 200))
        history.change_sentiment(3, -0.5)
        importing.commit()
    finally:
        importing.close()
    with history.session() as session:
        ticket = session.get(Ticket, history.ticket_ids[3])
        assert ticket is not None
        hour = rollups.floor_hour(ticket.created_at)
        assert rollup_cells.marked(session, history.org_id) == [("created", hour, hour + timedelta(hours=1))]
    history.assert_rollups_are_a_build(skip_dirty=True)


def test_deltas_fold_into_the_rows_and_a_build_drops_those_of_its_range(history: History) -> None:
    rng = random.Random(20)
    deltas = text("SELECT count(*), min(bucket_start) FROM analytics_metric_deltas WHERE org_id = :o")
    with history.session() as session:
        history.import_rows(session, _rows(rng, 200))
        session.commit()
        appended, _ = session.execute(deltas, {"o": history.org_id}).one()
        assert appended > 200
        assert history.org_id in rollups.delta_orgs(session)
    history.assert_rollups_are_a_build()
    with history.session() as session:
        assert rollups.fold_deltas(session, org_id=history.org_id) > 0
        session.commit()
        assert session.execute(deltas, {"o": history.org_id}).one()[0] == 0
        assert history.org_id not in rollups.delta_orgs(session)
        assert rollups.fold_deltas(session, org_id=history.org_id) == 0
    history.assert_rollups_are_a_build()

    # A build of the first half of the range replaces its rows from raw events and drops its deltas;
    # the second half's deltas stay, still added by readers.
    middle = datetime(2026, 6, 15, tzinfo=UTC)
    with history.session() as session:
        history.import_rows(session, _rows(rng, 200))
        session.commit()
        rollups.build(session, org_id=history.org_id, start=FIRST - timedelta(days=3), end=middle)
        session.commit()
        left, first = session.execute(deltas, {"o": history.org_id}).one()
        assert left > 0
        assert first >= middle
    history.assert_rollups_are_a_build()


def test_an_import_counts_its_tickets_for_the_distributions_once_for_the_batch(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 37: without the batch's own count the trigger would count each chunk apart.
    monkeypatch.setattr(imports, "WRITE_CHUNK", 37)
    fields = ("status", "priority", "channel", "category", "assigned_to")
    count_rows = text(
        "SELECT hour, field, value, count FROM analytics_ticket_counts WHERE org_id = :o"
        " ORDER BY hour, field, value, count"
    )
    with history.session() as session:
        before = session.execute(count_rows, {"o": history.org_id}).all()
        report = history.import_rows(session, _rows(random.Random(19), 400))
        # Later inserts of the same transaction are counted by the trigger again.
        session.execute(
            text(
                "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at,"
                " updated_at, reopen_count) VALUES (:o, 'by hand', 'open', 'low', 'web', 'bug',"
                " '2025-01-05T05:05:00Z', now(), 0)"
            ),
            {"o": history.org_id},
        )
        session.commit()
        assert report.imported == 402
        added = [row for row in session.execute(count_rows, {"o": history.org_id}) if row not in before]
        # The batch's rows: one per hour, field and value (summed over its chunks), beside the trigger's.
        by_hand = datetime(2025, 1, 5, 5, tzinfo=UTC)
        assert sorted((row.field, row.count) for row in added if row.hour == by_hand) == [
            (field, 1) for field in sorted(fields)
        ]
        batch = [row for row in added if row.hour != by_hand]
        assert len({(row.hour, row.field, row.value) for row in batch}) == len(batch)
        expected: dict[tuple[datetime, str, str | None], int] = {}
        for ticket in session.query(Ticket).filter(Ticket.org_id == history.org_id):
            hour = ticket.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            for field in fields:
                key = (hour, field, getattr(ticket, field))
                expected[key] = expected.get(key, 0) + 1
        summed: dict[tuple[datetime, str, str | None], int] = {}
        for row in session.execute(count_rows, {"o": history.org_id}):
            summed[(row.hour, row.field, row.value)] = (
                summed.get((row.hour, row.field, row.value), 0) + row.count
            )
        assert {k: v for k, v in summed.items() if v} == expected


# --- failures and the safety switches ---------------------------------------------------------------


def test_a_rejected_import_leaves_no_ticket_rollup_or_mark(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "WRITE_CHUNK", 50)
    rows = _rows(random.Random(17), 200)
    rows[180]["priority"] = "whenever"  # after several chunks were written
    with history.session() as session:
        before = (
            rollup_cells.answered(session, history.org_id),
            rollup_cells.marked(session, history.org_id),
        )
        count = session.scalar(text("SELECT count(*) FROM tickets WHERE org_id = :o"), {"o": history.org_id})
        with pytest.raises(imports.ImportRejected) as caught:
            history.import_rows(session, rows)
        assert caught.value.report.invalid == 1
        session.rollback()
        assert session.scalar(text("SHOW session_replication_role")) == "origin"
        after = (rollup_cells.answered(session, history.org_id), rollup_cells.marked(session, history.org_id))
        assert after == before
        assert (
            session.scalar(text("SELECT count(*) FROM tickets WHERE org_id = :o"), {"o": history.org_id})
            == count
        )


def test_the_insert_trigger_skips_marking_only_inserts_under_the_setting(make_tenant, db_session) -> None:
    org = db_session.get(Organization, make_tenant().org_id)
    ticket = create_ticket(db_session, org, {"created_at": datetime(2026, 4, 1, 10, 30, tzinfo=UTC)}).ticket
    db_session.execute(text("DELETE FROM analytics_rollup_dirty WHERE org_id = :o"), {"o": org.id})
    insert = text(
        "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,"
        " category, value) VALUES (:o, :t, 'first_response', :at, 'open', 'normal', 'web', 'general', 1.5)"
    )
    at = datetime(2026, 4, 2, 8, 15, tzinfo=UTC)
    with rollups.marks_suppressed(db_session):
        db_session.execute(insert, {"o": org.id, "t": ticket.id, "at": at})
    assert rollup_cells.marked(db_session, org.id) == []
    # An update or a delete changes events some rollup already counts: always marked.
    with rollups.marks_suppressed(db_session):
        db_session.execute(
            text(
                "UPDATE ticket_events SET value = 2.5 WHERE ticket_id = :t AND event_type = 'first_response'"
            ),
            {"t": ticket.id},
        )
    hour = datetime(2026, 4, 2, 8, tzinfo=UTC)
    assert set(rollup_cells.marked(db_session, org.id)) == {
        ("first_response", hour, hour + timedelta(hours=1))
    }
    # Outside the block the setting is off again.
    db_session.execute(insert, {"o": org.id, "t": ticket.id, "at": at + timedelta(days=1)})
    assert set(rollup_cells.marked(db_session, org.id)) == {
        ("first_response", hour, hour + timedelta(hours=1)),
        ("first_response", hour + timedelta(days=1), hour + timedelta(days=1, hours=1)),
    }


def test_bulk_writes_turn_foreign_key_checks_back_on(make_tenant, db_session) -> None:
    org = db_session.get(Organization, make_tenant().org_id)
    result = create_tickets_bulk(db_session, org, [{"subject": "one"}, {"subject": "two"}])
    assert len(result.ticket_ids) == 2
    assert db_session.scalar(text("SHOW session_replication_role")) == "origin"
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.execute(
            text(
                "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority,"
                " channel, category) VALUES (:o, -1, 'created', now(), 'open', 'normal', 'web', 'general')"
            ),
            {"o": org.id},
        )


def test_row_checks_stay_on_when_the_tables_have_triggers_of_their_own(db_session) -> None:
    conn = db_session.connection().connection.driver_connection
    nested = db_session.begin_nested()
    # Replica mode would skip this trigger as well as the foreign keys: no skipping then.
    db_session.execute(
        text(
            "CREATE TRIGGER someone_elses BEFORE UPDATE ON tickets FOR EACH ROW"
            " EXECUTE FUNCTION suppress_redundant_updates_trigger()"
        )
    )
    assert skip_row_checks(conn, BULK_TABLES) is False
    assert db_session.scalar(text("SHOW session_replication_role")) == "origin"
    nested.rollback()
    assert skip_row_checks(conn, BULK_TABLES) is True
    assert db_session.scalar(text("SHOW session_replication_role")) == "replica"
    db_session.execute(text("SET LOCAL session_replication_role = origin"))


def test_a_bulk_write_for_an_organization_that_is_gone_is_refused(db_session) -> None:
    planned = plan_ticket(Organization(id=-5, name="gone", timezone="UTC"), {}, _now())
    with pytest.raises(TicketError, match="does not exist"):
        insert_planned(db_session, [planned])


# --- the job -------------------------------------------------------------------------------------


@pytest.mark.worker
def test_an_import_job_has_the_rollups_current_when_it_succeeds(celery_worker, history: History) -> None:
    rows = _rows(random.Random(18), 500)
    response = history.tenant.agent.post("/api/v1/tickets/import", json=rows)
    assert response.status_code == 202, response.get_json()
    done = wait_for_job(history.tenant.viewer, response.get_json()["job_id"], timeout=60)
    assert done["state"] == "succeeded", done
    assert done["result"]["imported"] == len(rows)
    with history.session() as session:
        closed = rollups.floor_hour(_now())
        assert rollups.pending(session, org_id=history.org_id, before=closed) == []
        assert history.org_id in rollups.delta_orgs(session)
    history.assert_rollups_are_a_build()
    # Beat's refresh folds the import's deltas into the rows.
    history.app.extensions["celery"].send_task("rollups.refresh_pending")
    deadline = time.monotonic() + 60
    with history.session() as session:
        while history.org_id in rollups.delta_orgs(session):
            session.rollback()
            assert time.monotonic() < deadline, "the deltas were not folded"
            time.sleep(0.1)
    history.assert_rollups_are_a_build()


def test_a_fold_marks_the_hours_of_deltas_of_another_grain_dirty_instead_of_adding_them(
    make_tenant, db_session
) -> None:
    """Deltas of the grains before migration 0030 (a process still running that code) are never
    summed up as if they kept every dimension: dropped, their hours read from raw events."""
    org = db_session.get(Organization, make_tenant().org_id)
    hour = datetime(2026, 4, 2, 8, tzinfo=UTC)
    db_session.execute(text("DELETE FROM analytics_rollup_dirty WHERE org_id = :o"), {"o": org.id})
    db_session.execute(
        text(
            "INSERT INTO analytics_metric_deltas (org_id, metric, grain, bucket_start, status, priority,"
            " channel, category, assigned_to, count, updated_at)"
            " VALUES (:o, 'ticket_count', 0, :h, '', '', '', '', NULL, 3, now())"
        ),
        {"o": org.id, "h": hour},
    )
    rollups.fold_deltas(db_session, org_id=org.id)
    left = text("SELECT count(*) FROM analytics_metric_deltas WHERE org_id = :o")
    assert db_session.execute(left, {"o": org.id}).scalar() == 0
    assert rollup_cells.cells(db_session, org.id) == {}
    assert set(rollup_cells.marked(db_session, org.id)) == {
        (event_type, hour, hour + timedelta(hours=1)) for event_type in rollups.ROLLED_EVENT_TYPES
    }
