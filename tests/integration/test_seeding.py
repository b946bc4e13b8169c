"""The seed generator: COPYed tickets agree with their events exactly as the write path leaves them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from tests.conftest import scratch_database
from webapp.infra.migrations import upgrade
from webapp.tickets import seeding

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TICKETS = 4000


def _seed(db_connection: Connection, org_id: int, **kwargs: Any) -> seeding.SeedStats:
    # The org lives in the test's open transaction, so the seed must use the same connection.
    conn = db_connection.connection.driver_connection
    kwargs.setdefault("tickets", TICKETS)
    kwargs.setdefault("days", 90)
    kwargs.setdefault("now", NOW)
    return seeding.seed_tickets(conn, org_id=org_id, **kwargs)


def _scalar(db_connection: Connection, sql: str, **params: Any) -> Any:
    return db_connection.execute(text(sql), params).scalar()


def _violations(db_connection: Connection, sql: str, **params: Any) -> list[Any]:
    """Rows breaking a rule (the query selects them), a few shown in the failure message."""
    return list(db_connection.execute(text(sql + " LIMIT 5"), params))


@pytest.fixture
def seeded(db_connection: Connection, make_org: Any) -> tuple[int, seeding.SeedStats]:
    org = make_org(name="Seeded", timezone="Europe/Berlin")
    return org["id"], _seed(db_connection, org["id"], tz="Europe/Berlin", seed=7)


def test_counts_and_ids(db_connection, seeded):
    org_id, stats = seeded
    assert stats.tickets == TICKETS
    assert _scalar(db_connection, "SELECT count(*) FROM tickets WHERE org_id = :o", o=org_id) == TICKETS
    events = _scalar(db_connection, "SELECT count(*) FROM ticket_events WHERE org_id = :o", o=org_id)
    assert events == stats.events
    base = _scalar(
        db_connection,
        "SELECT count(*) FROM ticket_events WHERE org_id = :o"
        " AND event_type NOT IN ('backlog', 'solved', 'next_reply', 'rated')",
        o=org_id,
    )
    assert 4 * TICKETS < base < 8 * TICKETS
    ids = db_connection.execute(
        text("SELECT min(id), max(id) FROM tickets WHERE org_id = :o"), {"o": org_id}
    ).one()
    assert tuple(ids) == (stats.first_id, stats.last_id)
    orphans = _violations(
        db_connection,
        "SELECT e.id FROM ticket_events e LEFT JOIN tickets t ON t.id = e.ticket_id "
        "WHERE e.org_id = :o AND (t.id IS NULL OR t.org_id <> e.org_id)",
        o=org_id,
    )
    assert orphans == []
    # Foreign-key checks may be skipped during the seed, never after it.
    assert _scalar(db_connection, "SHOW session_replication_role") == "origin"


def test_ids_come_from_the_sequence(db_connection, seeded):
    org_id, stats = seeded
    next_id = _scalar(
        db_connection,
        "INSERT INTO tickets (org_id, subject, status, priority, channel, category, created_at, "
        "reopen_count) VALUES (:o, 'live', 'open', 'normal', 'web', 'general', now(), 0) RETURNING id",
        o=org_id,
    )
    assert next_id > stats.last_id


def test_one_created_event_at_created_at(db_connection, seeded):
    org_id, _ = seeded
    bad = _violations(
        db_connection,
        "SELECT t.id FROM tickets t LEFT JOIN ticket_events e "
        "ON e.ticket_id = t.id AND e.event_type = 'created' "
        "WHERE t.org_id = :o GROUP BY t.id "
        "HAVING count(e.id) <> 1 OR bool_or(e.occurred_at <> t.created_at) OR bool_or(e.status <> 'open')",
        o=org_id,
    )
    assert bad == []


def test_no_event_before_creation_or_after_now(db_connection, seeded):
    org_id, _ = seeded
    bad = _violations(
        db_connection,
        "SELECT e.id FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id "
        "WHERE e.org_id = :o AND (e.occurred_at >= :now OR e.occurred_at < t.created_at)",
        o=org_id,
        now=NOW,
    )
    assert bad == []
    oldest = _scalar(db_connection, "SELECT min(created_at) FROM tickets WHERE org_id = :o", o=org_id)
    assert (NOW - oldest).days <= 90


def test_first_response_events_match_the_ticket(db_connection, seeded):
    org_id, _ = seeded
    bad = _violations(
        db_connection,
        "SELECT t.id FROM tickets t LEFT JOIN ticket_events e "
        "ON e.ticket_id = t.id AND e.event_type = 'first_response' "
        "WHERE t.org_id = :o GROUP BY t.id "
        "HAVING count(e.id) <> (t.first_response_at IS NOT NULL)::int "
        "OR bool_or(e.occurred_at <> t.first_response_at) "
        "OR bool_or(abs(e.value - extract(epoch FROM t.first_response_at - t.created_at) / 3600) > 1e-9)",
        o=org_id,
    )
    assert bad == []


def test_resolved_events_and_resolved_at(db_connection, seeded):
    org_id, _ = seeded
    wrong_value = _violations(
        db_connection,
        "SELECT e.id FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id "
        "WHERE e.org_id = :o AND e.event_type = 'resolved' "
        "AND (e.value IS NULL OR e.status <> 'resolved' "
        "OR abs(e.value - extract(epoch FROM e.occurred_at - t.created_at) / 3600) > 1e-9)",
        o=org_id,
    )
    assert wrong_value == []
    # Resolving writes status_changed and resolved at the same instant, as webapp.tickets does.
    unpaired = _violations(
        db_connection,
        "SELECT e.id FROM ticket_events e WHERE e.org_id = :o AND e.event_type = 'resolved' "
        "AND NOT EXISTS (SELECT 1 FROM ticket_events s WHERE s.ticket_id = e.ticket_id "
        "AND s.event_type = 'status_changed' AND s.occurred_at = e.occurred_at AND s.status = 'resolved')",
        o=org_id,
    )
    assert unpaired == []
    # resolved_at is the latest resolution, or NULL when a reopen came after it.
    bad = _violations(
        db_connection,
        "SELECT t.id FROM tickets t "
        "LEFT JOIN LATERAL (SELECT max(occurred_at) FILTER (WHERE event_type = 'resolved') AS resolved, "
        "max(occurred_at) FILTER (WHERE event_type = 'reopened') AS reopened "
        "FROM ticket_events WHERE ticket_id = t.id) e ON true "
        "WHERE t.org_id = :o AND t.resolved_at IS DISTINCT FROM "
        "CASE WHEN e.resolved IS NULL OR e.reopened > e.resolved THEN NULL ELSE e.resolved END "
        "OR (t.resolved_at IS NOT NULL) <> (t.status IN ('resolved', 'closed'))",
        o=org_id,
    )
    assert bad == []


def test_reopens(db_connection, seeded):
    org_id, _ = seeded
    bad = _violations(
        db_connection,
        "SELECT t.id FROM tickets t LEFT JOIN ticket_events e "
        "ON e.ticket_id = t.id AND e.event_type = 'reopened' "
        "WHERE t.org_id = :o GROUP BY t.id HAVING count(e.id) <> t.reopen_count",
        o=org_id,
    )
    assert bad == []
    unpaired = _violations(
        db_connection,
        "SELECT e.id FROM ticket_events e WHERE e.org_id = :o AND e.event_type = 'reopened' "
        "AND NOT EXISTS (SELECT 1 FROM ticket_events s WHERE s.ticket_id = e.ticket_id "
        "AND s.event_type = 'status_changed' AND s.occurred_at = e.occurred_at AND s.status = 'open')",
        o=org_id,
    )
    assert unpaired == []
    counts = db_connection.execute(
        text(
            "SELECT count(*) FILTER (WHERE reopen_count > 0), "
            "count(*) FILTER (WHERE reopen_count > 0 AND resolved_at IS NOT NULL) "
            "FROM tickets WHERE org_id = :o"
        ),
        {"o": org_id},
    ).one()
    reopened, reresolved = counts
    assert 0.03 * TICKETS < reopened < 0.09 * TICKETS
    assert 0 < reresolved < reopened


def test_ticket_row_is_the_state_after_its_last_event(db_connection, seeded):
    org_id, _ = seeded
    bad = _violations(
        db_connection,
        "SELECT t.id FROM tickets t JOIN LATERAL (SELECT * FROM ticket_events e WHERE e.ticket_id = t.id "
        "AND e.event_type NOT IN ('backlog', 'solved', 'next_reply', 'rated') "
        "ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) last ON true "
        "WHERE t.org_id = :o AND (t.updated_at <> last.occurred_at OR t.status <> last.status "
        "OR t.priority <> last.priority OR t.channel <> last.channel OR t.category <> last.category "
        "OR t.assigned_to IS DISTINCT FROM last.assigned_to)",
        o=org_id,
    )
    assert bad == []


def test_events_carry_the_dimensions_of_their_moment(db_connection, seeded):
    org_id, _ = seeded
    # A change event records the value it changed to, and a status change starts from the status
    # the ticket's previous event saw (a reopen writes reopened, then status_changed, both "open").
    # Derived events are left out: a backlog step out of a status carries the status it leaves and
    # shares its instant with the change, so where it falls among them depends on the insert's plan.
    bad = _violations(
        db_connection,
        "SELECT id FROM (SELECT e.*, lag(status) OVER w AS prev_status, lag(event_type) OVER w AS prev_type "
        "FROM ticket_events e WHERE e.org_id = :o "
        "AND e.event_type NOT IN ('backlog', 'solved', 'next_reply', 'rated') "
        "WINDOW w AS (PARTITION BY ticket_id ORDER BY occurred_at, id)) e "
        "WHERE (event_type IN ('status_changed', 'reopened') AND detail->>'to' <> status) "
        "OR (event_type = 'assigned' AND detail->>'to' IS DISTINCT FROM assigned_to) "
        "OR (event_type = 'priority_changed' AND detail->>'to' <> priority) "
        "OR (event_type = 'status_changed' AND prev_type <> 'reopened' AND detail->>'from' <> prev_status)",
        o=org_id,
    )
    assert bad == []


def test_realistic_mix(db_connection, seeded):
    org_id, _ = seeded
    shares = dict(
        db_connection.execute(
            text("SELECT priority, count(*)::float / :n FROM tickets WHERE org_id = :o GROUP BY 1"),
            {"o": org_id, "n": TICKETS},
        ).all()
    )
    assert shares["normal"] > shares["low"] > shares["high"] > shares["urgent"] > 0.03
    row = db_connection.execute(
        text(
            "SELECT avg((sentiment_score IS NULL)::int), min(sentiment_score), max(sentiment_score), "
            "avg((assigned_to IS NULL)::int), count(DISTINCT category), count(DISTINCT assigned_to), "
            "count(DISTINCT channel), count(DISTINCT status) "
            "FROM tickets WHERE org_id = :o"
        ),
        {"o": org_id},
    ).one()
    null_sentiment, low, high, unassigned, categories, agents, channels, statuses = row
    assert 0.07 < null_sentiment < 0.13
    assert -1 <= low < 0 < high <= 1
    assert 0.03 < unassigned < 0.12  # 5% never assigned, plus recent tickets awaiting triage
    assert (categories, agents, channels) == (len(seeding.CATEGORIES), len(seeding.AGENTS), 6)
    assert statuses >= 4  # open, pending, resolved and closed at least
    # Medians of first response follow priority.
    medians = dict(
        db_connection.execute(
            text(
                "SELECT priority, percentile_cont(0.5) WITHIN GROUP (ORDER BY value) FROM ticket_events "
                "WHERE org_id = :o AND event_type = 'first_response' GROUP BY 1"
            ),
            {"o": org_id},
        ).all()
    )
    assert medians["urgent"] < medians["high"] < medians["normal"] < medians["low"]


def test_seasonality_in_local_time(db_connection, make_org):
    org = make_org(name="Tokyo", timezone="Asia/Tokyo")
    _seed(db_connection, org["id"], tz="Asia/Tokyo", seed=3)
    row = db_connection.execute(
        text(
            "SELECT avg((extract(hour FROM created_at AT TIME ZONE 'Asia/Tokyo') BETWEEN 9 AND 16)::int), "
            "avg((extract(isodow FROM created_at AT TIME ZONE 'Asia/Tokyo') >= 6)::int) "
            "FROM tickets WHERE org_id = :o"
        ),
        {"o": org["id"]},
    ).one()
    business_hours, weekend = row
    assert business_hours > 0.5  # a third of the day's hours carry most of the tickets
    assert 0.08 < weekend < 0.18  # two days at ~40% of a weekday: ~13%


def _snapshot(db_connection: Connection, org_id: int, first_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in db_connection.execute(
            text(
                "SELECT ticket_id - :first, event_type, occurred_at, status, priority, channel, category, "
                "assigned_to, value, detail::text FROM ticket_events WHERE org_id = :o "
                "ORDER BY ticket_id, occurred_at, id"
            ),
            {"o": org_id, "first": first_id},
        )
    ] + [
        tuple(row)
        for row in db_connection.execute(
            text(
                "SELECT id - :first, subject, status, priority, channel, category, assigned_to, "
                "sentiment_score, created_at, updated_at, first_response_at, resolved_at, reopen_count "
                "FROM tickets WHERE org_id = :o ORDER BY id"
            ),
            {"o": org_id, "first": first_id},
        )
    ]


def test_same_seed_same_data(db_connection, make_org):
    runs = []
    for name, seed in (("A", 11), ("B", 11), ("C", 12)):
        org = make_org(name=name)
        stats = _seed(db_connection, org["id"], tickets=1500, seed=seed)
        runs.append(_snapshot(db_connection, org["id"], stats.first_id))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_progress_after_each_batch_and_empty_seed(db_connection, make_org, monkeypatch):
    monkeypatch.setattr(seeding.load, "BATCH_TICKETS", 400)
    org = make_org()
    reported: list[int] = []
    stats = _seed(db_connection, org["id"], tickets=1000, progress=reported.append)
    assert reported == [400, 800, 1000]
    assert stats.tickets == 1000
    empty = _seed(db_connection, org["id"], tickets=0)
    assert (empty.tickets, empty.events, empty.first_id) == (0, 0, None)


def test_unknown_org_is_refused(db_connection):
    with pytest.raises(ValueError, match="does not exist"):
        _seed(db_connection, 2_000_000_000, tickets=10)


def test_seeded_derived_events_are_what_the_write_path_derives(db_connection, seeded):
    """The SQL that derives seeded tickets' events agrees with tickets.history, ticket by ticket."""
    from sqlalchemy.orm import Session

    from webapp.models import Ticket
    from webapp.tickets.derived_events import event_key, facts_of
    from webapp.tickets.history import derive

    org_id, _ = seeded
    counts = dict(
        db_connection.execute(
            text(
                "SELECT event_type, count(*) FROM ticket_events WHERE org_id = :o"
                " AND event_type IN ('backlog', 'solved', 'next_reply', 'rated') GROUP BY 1"
            ),
            {"o": org_id},
        ).all()
    )
    assert set(counts) == {"backlog", "solved", "next_reply", "rated"}
    assert _scalar(db_connection, "SELECT count(*) FROM ticket_replies WHERE org_id = :o", o=org_id) > TICKETS
    session = Session(bind=db_connection)
    # Every fifth ticket: old ones long closed as well as the newest, cut by `now` mid-way.
    tickets = session.scalars(
        select(Ticket).where(Ticket.org_id == org_id, Ticket.id % 5 == 0).order_by(Ticket.id)
    )
    for ticket in tickets:
        # (repr: a ticket's steps at one instant may differ only in an assignee that is None in one)
        wanted = sorted((event_key(values) for values in derive(facts_of(session, ticket))), key=repr)
        rows = db_connection.execute(
            text(
                "SELECT event_type, occurred_at, status, priority, channel, category, assigned_to,"
                " value, detail"
                " FROM ticket_events WHERE ticket_id = :t"
                " AND event_type IN ('backlog', 'solved', 'next_reply', 'rated')"
            ),
            {"t": ticket.id},
        )
        assert sorted((event_key(row._mapping) for row in rows), key=repr) == wanted, ticket.id


def _index_definitions(db_connection: Connection) -> set[tuple[str, str]]:
    """The indexes and constraints of the seeded tables, as the catalog writes them."""
    rows = db_connection.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename IN ('tickets', 'ticket_events') "
            "UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid IN (CAST('tickets' AS regclass), CAST('ticket_events' AS regclass))"
        )
    )
    return {(name, definition) for name, definition in rows}


@pytest.fixture
def dropped_indexes(db_connection: Connection, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The DROP INDEX statements the seeder runs from now on."""
    dropped: list[str] = []
    cursor_type = type(db_connection.connection.driver_connection.cursor())
    real_execute = cursor_type.execute

    def watching(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if str(query).startswith("DROP INDEX"):
            dropped.append(str(query))
        return real_execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(cursor_type, "execute", watching)
    return dropped


@pytest.fixture
def fresh_tables(services: Any) -> Iterator[Connection]:
    """A connection (in a transaction) to a newly migrated database, whose tables hold only what a
    test adds: a seed larger than its tables stays small, whatever the rest of the suite wrote."""
    with scratch_database(services, "seed_check") as url:
        upgrade(url)
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn, conn.begin():
                yield conn
        finally:
            engine.dispose()


def _scratch_org(conn: Connection) -> int:
    return conn.execute(
        text("INSERT INTO organizations (name, timezone) VALUES ('Scratch', 'UTC') RETURNING id")
    ).scalar_one()


def test_a_seed_larger_than_its_tables_builds_their_indexes_after_the_rows(fresh_tables, dropped_indexes):
    """Indexes dropped for the load come back the same, and hold every seeded row, old and new."""
    conn = fresh_tables
    _seed(conn, _scratch_org(conn), tickets=300)
    dropped_indexes.clear()
    before = _index_definitions(conn)
    conn.execute(text("ANALYZE tickets, ticket_events"))
    existing = _scalar(conn, "SELECT count(*) FROM ticket_events")
    org_id = _scratch_org(conn)
    stats = _seed(conn, org_id, tickets=2000)
    assert stats.events > existing  # more events than the table held
    assert len(dropped_indexes) >= 3  # ticket_events' secondary indexes at least
    assert _index_definitions(conn) == before
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    by_index = _scalar(
        conn, "SELECT count(*) FROM ticket_events WHERE org_id = :o AND occurred_at > '1900-01-01'", o=org_id
    )
    assert by_index == stats.events
    by_ticket = _scalar(
        conn,
        "SELECT count(*) FROM ticket_events WHERE ticket_id BETWEEN :lo AND :hi",
        lo=stats.first_id,
        hi=stats.last_id,
    )
    assert by_ticket == stats.events
    everything = _scalar(conn, "SELECT count(*) FROM ticket_events WHERE occurred_at > '1900-01-01'")
    assert everything == existing + stats.events


def test_a_seed_smaller_than_its_tables_keeps_their_indexes(db_connection, make_org, dropped_indexes):
    """Into a table that holds more than the seed adds, rows go through the indexes as they come."""
    big = make_org()
    _seed(db_connection, big["id"], tickets=3000)
    db_connection.execute(text("ANALYZE tickets, ticket_events"))
    dropped_indexes.clear()
    small = make_org()
    stats = _seed(db_connection, small["id"], tickets=100)
    assert stats.tickets == 100
    assert dropped_indexes == []


def test_every_rolled_event_lies_in_a_dirty_mark(db_connection, seeded):
    """The seed marks its hours once per event type instead of per COPY; every hour it wrote a rolled
    event into is among them, and the trigger's switch is back as it was."""
    from webapp.analytics.rollups import MAINTAINED_SETTING, ROLLED_EVENT_TYPES

    org_id, _ = seeded
    marked = db_connection.execute(
        text("SELECT event_type, lo, hi FROM analytics_rollup_dirty WHERE org_id = :o"), {"o": org_id}
    ).all()
    assert {m.event_type for m in marked} == set(ROLLED_EVENT_TYPES)
    events = db_connection.execute(
        text("SELECT event_type, occurred_at FROM ticket_events WHERE org_id = :o"), {"o": org_id}
    ).all()
    rolled = [e for e in events if e.event_type in ROLLED_EVENT_TYPES]
    assert {e.event_type for e in rolled} == set(ROLLED_EVENT_TYPES)
    uncovered = [
        e
        for e in rolled
        if not any(m.event_type == e.event_type and m.lo <= e.occurred_at < m.hi for m in marked)
    ]
    assert uncovered == []
    setting = _scalar(db_connection, f"SELECT current_setting('{MAINTAINED_SETTING}', true)")
    assert setting in (None, "", "off")


def test_ticket_counts_are_the_seeded_tickets(db_connection, seeded):
    """The tickets' count trigger fired for the COPY: per UTC hour, field and value, as counted here."""
    from collections import Counter

    org_id, _ = seeded
    fields = ("status", "priority", "channel", "category", "assigned_to")
    wanted: Counter[tuple[Any, ...]] = Counter()
    for row in db_connection.execute(
        text(f"SELECT created_at, {', '.join(fields)} FROM tickets WHERE org_id = :o"), {"o": org_id}
    ):
        hour = row.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        for field in fields:
            wanted[(hour, field, getattr(row, field))] += 1
    stored: Counter[tuple[Any, ...]] = Counter()
    for hour, field, value, count in db_connection.execute(
        text("SELECT hour, field, value, count FROM analytics_ticket_counts WHERE org_id = :o"), {"o": org_id}
    ):
        stored[(hour.astimezone(UTC), field, value)] += count
    assert +stored == wanted
    # The seed writes them with the tickets' count trigger off; it is on again (ALWAYS) after.
    enabled = _scalar(
        db_connection,
        "SELECT tgenabled FROM pg_trigger WHERE tgrelid = CAST('tickets' AS regclass)"
        " AND tgname = 'analytics_tickets_inserted'",
    )
    assert enabled == "A"


def test_status_history_is_what_the_events_carry(db_connection, seeded):
    """ticket_status_changes (COPYed with the batch) holds, ticket by ticket, the status each created,
    status_changed and resolved event carries in time order, repeats dropped."""
    org_id, _ = seeded
    carried: dict[int, list[tuple[Any, str]]] = {}
    for ticket_id, at, event_type, status, detail in db_connection.execute(
        text(
            "SELECT ticket_id, occurred_at, event_type, status, detail FROM ticket_events WHERE org_id = :o"
            " AND event_type IN ('created', 'status_changed', 'resolved') ORDER BY ticket_id, occurred_at, id"
        ),
        {"o": org_id},
    ):
        entries = carried.setdefault(ticket_id, [])
        now_status = detail["to"] if event_type == "status_changed" else status
        if not entries or entries[-1][1] != now_status:
            entries.append((at, now_status))
    stored: dict[int, list[tuple[Any, str]]] = {}
    for ticket_id, at, status in db_connection.execute(
        text(
            "SELECT ticket_id, at, status FROM ticket_status_changes WHERE org_id = :o"
            " ORDER BY ticket_id, at, id"
        ),
        {"o": org_id},
    ):
        stored.setdefault(ticket_id, []).append((at, status))
    assert len(carried) == TICKETS
    assert stored == carried


def test_a_seed_larger_than_a_tenth_of_the_tickets_leaves_statistics_of_what_it_wrote(
    db_connection, make_org
):
    """Until the tables are analyzed the planner takes a new organization for no rows, and a plan made
    for none over many can run for minutes; a large seed analyzes what it wrote to, in its transaction."""
    org = make_org(name="Analyzed", timezone="UTC")
    held = _scalar(db_connection, "SELECT count(*) FROM tickets")
    tickets = max(TICKETS, held // 5)
    _seed(db_connection, org["id"], tickets=tickets)
    estimate = _scalar(
        db_connection,
        "SELECT reltuples FROM pg_class WHERE oid = CAST('tickets' AS regclass)",
    )
    assert estimate >= 0.9 * (held + tickets)
    facts = _scalar(
        db_connection,
        "SELECT reltuples FROM pg_class WHERE oid = CAST('ticket_sla_facts' AS regclass)",
    )
    assert facts >= tickets * 0.9


def test_sla_facts_are_written_once_as_the_triggers_would_leave_them(db_connection, seeded):
    """The seed writes each ticket's SLA facts itself, with the three insert triggers off: one row a
    ticket, equal to a recount from its steps and replies, and the triggers on (ALWAYS) again after."""
    from tests.integration.test_sla_facts import _kept, _recount

    org_id, stats = seeded
    rows = _scalar(db_connection, "SELECT count(*) FROM ticket_sla_facts WHERE org_id = :o", o=org_id)
    assert rows == stats.tickets
    expected = _recount(db_connection, org_id)  # type: ignore[arg-type]
    assert len(expected) == stats.tickets
    assert _kept(db_connection, org_id) == expected  # type: ignore[arg-type]
    enabled = db_connection.execute(
        text(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname IN ('ticket_sla_facts_ticket_inserted',"
            " 'ticket_sla_facts_steps_inserted', 'ticket_sla_facts_replies_inserted')"
        )
    ).all()
    assert sorted(state for _, state in enabled) == ["A", "A", "A"]
