"""seed_tickets: synthetic batches COPYed into tickets and ticket_events, formatted one batch ahead."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg

from webapp.core.timeutil import utcnow
from webapp.tickets.row_checks import restore_row_checks, skip_row_checks
from webapp.tickets.seeding.arrivals import created_times
from webapp.tickets.seeding.conversation import RATING_COPY, REPLY_COPY
from webapp.tickets.seeding.derived import derive_seeded
from webapp.tickets.seeding.history_rows import STATUS_CHANGE_COPY
from webapp.tickets.seeding.marks import hours_marked_once
from webapp.tickets.seeding.rows import EncodedBatch, encode_batch
from webapp.tickets.seeding.sla_facts import facts_by_seed, write_facts
from webapp.tickets.seeding.ticket_counts import COUNT_COPY, counted_by_seed

BATCH_TICKETS = 20_000
# Events a ticket has on average (for deciding how to maintain the indexes, see _deferred_indexes).
EVENTS_PER_TICKET = 6
STATUSES_PER_TICKET = 3
# Memory for building the deferred indexes: the sort of a large seed's keys stays in memory.
INDEX_BUILD_MEMORY = "512MB"

# A seed that adds more than this share of the tickets already held analyzes what it wrote to.
ANALYZE_FRACTION = 0.1
ANALYZED = (
    "tickets",
    "ticket_events",
    "ticket_replies",
    "ticket_ratings",
    "ticket_status_changes",
    "ticket_sla_facts",
    "analytics_ticket_counts",
    "analytics_ticket_count_days",
)

TICKET_COPY = (
    "COPY tickets (id, org_id, subject, status, priority, channel, category, assigned_to, "
    "sentiment_score, created_at, updated_at, first_response_at, resolved_at, reopen_count) FROM STDIN"
)
EVENT_COPY = (
    "COPY ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel, "
    "category, assigned_to, value, detail) FROM STDIN"
)

Encoded = tuple[EncodedBatch, int]  # the batch's COPY text, tickets done


@dataclass(frozen=True)
class SeedStats:
    """What a seed run wrote."""

    tickets: int
    events: int
    first_id: int | None
    last_id: int | None
    seconds: float


def seed_tickets(
    conn: psycopg.Connection,
    *,
    org_id: int,
    tickets: int,
    days: int = 365,
    seed: int = 0,
    tz: str = "UTC",
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedStats:
    """COPY `tickets` synthetic tickets of `org_id` and their events, the same ones for the same seed."""
    _check_arguments(tickets, days, now)
    started = time.perf_counter()
    now_s = math.floor((now or utcnow()).timestamp())
    n_batches = math.ceil(tickets / BATCH_TICKETS)
    streams = np.random.SeedSequence(seed).spawn(1 + n_batches)
    created, utc_offset = created_times(np.random.default_rng(streams[0]), tickets, now_s, days, tz)
    events = 0
    first_id: int | None = None
    # A savepoint inside the caller's transaction, or a transaction of its own: all or nothing.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT 1 FROM organizations WHERE id = %s FOR KEY SHARE", (org_id,))
        if cur.fetchone() is None:
            raise ValueError(f"organization {org_id} does not exist")
        if tickets:
            first_id = _reserve_ids(cur, tickets)
        held = _estimated_rows(cur, "tickets")
        # The per-row foreign-key triggers are half the cost of a seed and check nothing it does not
        # guarantee already: the organization is locked above, every event's ticket written before it.
        skipping_checks = skip_row_checks(
            conn, ("tickets", "ticket_events", "ticket_replies", "ticket_ratings", "ticket_status_changes")
        )
        deferred = _deferred_indexes(
            cur,
            {
                "tickets": tickets,
                "ticket_events": tickets * EVENTS_PER_TICKET,
                # The tickets' insert trigger writes about one count a ticket (hour, field, value).
                "analytics_ticket_counts": tickets,
                # About three statuses a ticket (read by the solves' derivation in one sequential pass).
                "ticket_status_changes": tickets * STATUSES_PER_TICKET,
                # One a ticket, written once at the end where the seed writes them (sla_facts).
                "ticket_sla_facts": tickets,
            },
        )

        def encode(batch: int) -> Encoded:
            assert first_id is not None
            lo, hi = batch * BATCH_TICKETS, min((batch + 1) * BATCH_TICKETS, tickets)
            rng = np.random.default_rng(streams[1 + batch])
            encoded = encode_batch(rng, created[lo:hi], utc_offset[lo:hi], first_id + lo, org_id, now_s)
            return encoded, hi

        marking = (
            hours_marked_once(cur, org_id=org_id, first_s=int(created.min()), last_s=now_s - 1)
            if tickets
            else contextlib.nullcontext()
        )
        counted = counted_by_seed(cur) if tickets else contextlib.nullcontext(False)
        facts = facts_by_seed(cur) if tickets else contextlib.nullcontext(False)
        with marking, counted as counting, facts as writing_facts:
            for encoded, done in _prefetch(map(encode, range(n_batches))):
                _copy(cur, TICKET_COPY, encoded.tickets)
                if counting:
                    _copy(cur, COUNT_COPY, encoded.ticket_counts)
                _copy(cur, EVENT_COPY, encoded.events)
                _copy(cur, REPLY_COPY, encoded.replies)
                _copy(cur, RATING_COPY, encoded.ratings)
                _copy(cur, STATUS_CHANGE_COPY, encoded.status_changes)
                events += encoded.n_events
                if progress is not None:
                    progress(done)
            if tickets:
                # The solves, from the status history (before the deferred indexes come back: they
                # are built once, over these rows too).
                events += derive_seeded(cur, org_id=org_id, first=first_id, last=first_id + tickets - 1)
            if writing_facts:
                assert first_id is not None
                write_facts(cur, org_id=org_id, first=first_id, last=first_id + tickets - 1)
        if deferred:
            cur.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
            for definition in deferred:
                cur.execute(definition)
        if tickets > ANALYZE_FRACTION * held:
            # As autovacuum would once it comes round: until then the planner would take the
            # organization for the few rows it had, and a plan made for a few rows over these many
            # can run for minutes (an exact aggregation over the year: 227 s against 0.2 s).
            cur.execute(f"ANALYZE {', '.join(ANALYZED)}")
        if skipping_checks:
            restore_row_checks(conn)
    last_id = None if first_id is None else first_id + tickets - 1
    return SeedStats(tickets, events, first_id, last_id, time.perf_counter() - started)


def _check_arguments(tickets: int, days: int, now: datetime | None) -> None:
    if tickets < 0:
        raise ValueError("tickets must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _reserve_ids(cur: psycopg.Cursor, n: int) -> int:
    # The lock keeps other inserts from drawing ids between our nextval and setval. It lasts until
    # the caller's transaction ends, so live ticket writes wait for the seed (reads do not).
    cur.execute("LOCK TABLE tickets IN SHARE ROW EXCLUSIVE MODE")
    cur.execute("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))")
    row = cur.fetchone()
    assert row is not None
    first = int(row[0])
    cur.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), %s)", (first + n - 1,))
    return first


def _size(cur: psycopg.Cursor, table: str) -> tuple[float, int]:
    """The planner's row estimate of `table` (-1 until it was first vacuumed or analyzed) and its pages."""
    cur.execute("SELECT reltuples, relpages FROM pg_class WHERE oid = CAST(%s AS regclass)", (table,))
    found = cur.fetchone()
    assert found is not None
    return float(found[0]), int(found[1])


def _estimated_rows(cur: psycopg.Cursor, table: str) -> float:
    """The planner's row estimate of `table` (its pages' worth before it was first analyzed)."""
    estimate, pages = _size(cur, table)
    return estimate if estimate >= 0 else float(pages)


def _deferred_indexes(cur: psycopg.Cursor, adding: dict[str, int]) -> list[str]:
    """Drop the secondary indexes of each table the seed adds more rows to than it holds; return the
    statements that build them again (run once the rows are in).

    Building an index once over every row is several times cheaper than updating it row by row, and
    index upkeep is most of what the server does for a seed. Only where the table is small beside the
    seed: the build reads the rows already there too. Dropping takes the table's ACCESS EXCLUSIVE lock,
    so reads of a table seeded this way wait for the seed's transaction (a fresh or demo database
    has no readers yet); a rollback puts the indexes back. A primary key or unique constraint goes
    and comes back with its index unless a foreign key relies on it (the tickets' key stays). Partial
    and expression indexes stay: built again from the catalog's text, their predicate or expression
    would come back written differently, and the planner matches a partial index by how it is written.
    """
    statements: list[str] = []
    for table, rows in adding.items():
        estimate, pages = _size(cur, table)
        # reltuples is -1 until the table was first vacuumed or analyzed: then judge by its pages.
        existing = estimate if estimate >= 0 else (0 if pages == 0 else rows)
        if rows <= max(existing, 0):
            continue
        cur.execute(
            "SELECT CAST(indexrelid AS regclass)::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = CAST(%s AS regclass) AND NOT indisprimary AND NOT indisunique "
            "AND NOT indisexclusion AND indpred IS NULL AND indexprs IS NULL ORDER BY indexrelid",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f"DROP INDEX {name}")
            statements.append(definition)
        # A primary key or unique constraint no foreign key relies on is added back the same way.
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint c "
            "WHERE conrelid = CAST(%s AS regclass) AND contype IN ('p', 'u') AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.conrelid "
            "AND f.conindid = c.conindid) ORDER BY oid",
            (table,),
        )
        for name, definition in cur.fetchall():
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            statements.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    return statements


def _copy(cur: psycopg.Cursor, statement: str, data: bytes) -> None:
    with cur.copy(statement) as copy:
        # psycopg sends large buffers in slices; slices of a memoryview are not copies.
        copy.write(memoryview(data))


def _prefetch(items: Iterator[Encoded]) -> Iterator[Encoded]:
    """Yield `items`, producing the next one in a thread while the caller handles the current one."""
    ready: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(("item", item))
            ready.put(("end", None))
        except BaseException as exc:  # re-raised in the consumer
            ready.put(("error", exc))

    worker = threading.Thread(target=produce, name="seed-format", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = ready.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(payload, BaseException)
                raise payload
            yield payload  # type: ignore[misc]
    finally:
        stop.set()
        # Drain so a producer blocked on put() can see `stop` and finish.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
