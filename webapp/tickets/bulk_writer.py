"""BulkWriter: planned tickets and their events COPYed in chunks, in a thread, with their rollups."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg import Connection, Copy, Cursor
from psycopg.copy import FileWriter
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from webapp.analytics import agent_rollups, rollups, ticket_counts
from webapp.tickets.plans import PlannedTicket
from webapp.tickets.row_checks import restore_row_checks, skip_row_checks
from webapp.tickets.rules import TicketError

TICKET_COLUMNS = (
    "org_id",
    "subject",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
    "sentiment_score",
    "created_at",
    "updated_at",
    "first_response_at",
    "resolved_at",
    "reopen_count",
)
EVENT_COLUMNS = (
    "org_id",
    "ticket_id",
    "event_type",
    "occurred_at",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
    "value",
    "detail",
)
# A ticket's status history, replies and rating go straight to their tables (no rollup reads them).
STATUS_COLUMNS = ("org_id", "ticket_id", "status", "at")
REPLY_COLUMNS = ("org_id", "ticket_id", "author", "public", "at")
RATING_COLUMNS = ("ticket_id", "org_id", "rating", "comment", "at")
# Scratch tables of a bulk write (temporary, dropped at the latest with the transaction).
STAGED_TICKETS = "ticket_import"
STAGED_EVENTS = "event_import"
STAGED_TICKET_COLUMNS = ("id", *TICKET_COLUMNS)
STAGED_EVENT_COLUMNS = (*EVENT_COLUMNS, "ordinal")
# How much of finish()'s work is done after each step, as measured on an import of 10,000 tickets
# (bench.import_profile: the writer's last chunks 0.8 s, the rollups 0.9 to 1.4 s, the counts 0.15 s).
FINISH_STEPS = {"written": 0.35, "rolled up": 0.9}
# The tables a bulk write inserts into, whose foreign-key checks it may skip (skip_row_checks).
BULK_TABLES = (
    "tickets",
    "ticket_events",
    "analytics_metrics",
    "ticket_status_changes",
    "ticket_replies",
    "ticket_ratings",
)


class _Route(NamedTuple):
    """Where a chunk goes: COPY into `staged`, then rows numbered from a chunk's first on into `table`."""

    staged: str
    staged_columns: tuple[str, ...]
    table: str
    columns: tuple[str, ...]
    number: str  # the column that numbers the rows in order


_TICKETS = _Route(STAGED_TICKETS, STAGED_TICKET_COLUMNS, "tickets", STAGED_TICKET_COLUMNS, "id")
_EVENTS = _Route(STAGED_EVENTS, STAGED_EVENT_COLUMNS, "ticket_events", EVENT_COLUMNS, "ordinal")


@dataclass
class BulkResult:
    """What a bulk create wrote: the new tickets' ids (in row order) and its events by type."""

    ticket_ids: list[int]
    events: int
    event_types: set[str]


@dataclass(frozen=True)
class _Staging:
    """Ids drawn for the tickets, and the COPY column types of the scratch tables."""

    ids: list[int]
    ticket_types: list[int]
    event_types: list[int]
    # Column types of ticket_status_changes, ticket_replies and ticket_ratings.
    history_types: tuple[list[int], list[int], list[int]]


class BulkWriter:
    """Writes the planned tickets of one organization and their events, chunk by chunk, in a thread.

    Ticket ids for up to `size` tickets are drawn from the sequence up front and handed out in the
    order tickets are added. Each added chunk goes to a background thread that COPYs it into scratch
    tables and moves it on with one INSERT ... SELECT per table, so the database writes one chunk
    while the caller checks the next (the thread waits on the server with the GIL released). The
    caller must not use the session until finish() or close() returns.

    finish() adds the new events' rollups to analytics_metrics from the scratch tables, in the same
    transaction (rollups.merge_new_events): their hours are never marked dirty, and no refresh has to
    rebuild them from every event of those hours. It counts the new tickets for the distributions
    there as well (ticket_counts.add_tickets), once for the batch instead of per chunk. close() (or
    leaving the with block) without finish() waits for the thread and leaves the partial write to
    the caller's rollback.
    """

    def __init__(self, session: Session, org_id: int, size: int) -> None:
        self._session = session
        self._org_id = org_id
        session.flush()
        self._conn: Connection[Any] = session.connection().connection.driver_connection
        staging = _stage(self._conn, org_id, size)
        self._ids = staging.ids
        self._ticket_types, self._event_types = staging.ticket_types, staging.event_types
        self._history_types = staging.history_types
        # Every ticket and event is written here right after its organization was checked and its
        # ticket inserted, so the per-row foreign-key triggers would only repeat that.
        self._checks_skipped = skip_row_checks(self._conn, BULK_TABLES)
        # finish() adds the events to the rollups: the insert trigger must not mark them. Nothing
        # else uses the transaction until then (one setting for all chunks: fewer round trips).
        rollups.suppress_marks(session, True)
        # finish() counts the tickets for the distributions in one statement too: the insert trigger
        # would count each chunk apart (five rows a ticket, most of the tickets' insert time).
        ticket_counts.suppress_counts(session, True)
        self._restored = False
        self._formatting = self._conn.cursor()
        self._added = 0
        self._events = 0
        self._types: set[str] = set()
        self._failed: BaseException | None = None
        self._pending: list[Future[None]] = []
        self._thread: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="bulk-write")

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, planned: Sequence[PlannedTicket]) -> None:
        """Queue `planned` (tickets of this writer's organization) for writing, ids in order.

        The rows are formatted as COPY data here, in the caller's thread: the writing thread then
        holds the GIL only briefly, and the caller's next checks run while the server writes.
        """
        if self._thread is None:
            raise RuntimeError("the bulk writer is closed")
        if not planned:
            return
        if self._added + len(planned) > len(self._ids):
            raise ValueError(f"the bulk writer reserved ids for {len(self._ids)} tickets")
        if any(plan.ticket["org_id"] != self._org_id for plan in planned):
            raise ValueError("a bulk write holds the tickets of one organization")
        ids = self._ids[self._added : self._added + len(planned)]
        self._added += len(planned)
        first_event = self._events
        rows = zip(ids, planned, strict=True)
        tickets = self._copy_data(
            self._ticket_types,
            ([ticket_id, *(plan.ticket[c] for c in TICKET_COLUMNS)] for ticket_id, plan in rows),
        )
        events = self._copy_data(self._event_types, self._event_rows(ids, planned))
        history = self._history_data(ids, planned)
        self._pending.append(self._thread.submit(self._write, ids[0], tickets, first_event, events, history))

    def finish(self, on_step: Callable[[float], None] | None = None) -> BulkResult:
        """Wait for every chunk, add the rollups, drop the scratch tables; the caller commits.

        `on_step(fraction)` is told how much of this work is done after each step (FINISH_STEPS)."""
        step = on_step or (lambda fraction: None)
        self._drain()
        step(FINISH_STEPS["written"])
        rollups.merge_new_events(
            self._session, org_id=self._org_id, events=STAGED_EVENTS, tickets=STAGED_TICKETS
        )
        step(FINISH_STEPS["rolled up"])
        agent_rollups.add_tickets(self._session, self._org_id, STAGED_TICKETS)
        ticket_counts.add_tickets(self._session, org_id=self._org_id, tickets=STAGED_TICKETS)
        self._conn.execute(f"DROP TABLE {STAGED_EVENTS}, {STAGED_TICKETS}")
        self._restore()
        return BulkResult(self._ids[: self._added], self._events, self._types)

    def close(self) -> None:
        """Stop the thread: chunks not started are dropped, the one running is waited for.

        Without finish() the write is partial and the caller rolls back; the insert trigger and the
        foreign-key checks come back on in case it goes on with the transaction instead.
        """
        self._stop(cancel=True)
        self._formatting.close()
        if not self._restored and self._conn.info.transaction_status == TransactionStatus.INTRANS:
            self._restore()

    def _event_rows(self, ids: Sequence[int], planned: Sequence[PlannedTicket]) -> Iterator[list[Any]]:
        """COPY rows of the events of `planned`, numbered on from the events already added."""
        for ticket_id, plan in zip(ids, planned, strict=True):
            for event in plan.events:
                detail = event["detail"]
                yield [
                    event["org_id"],
                    ticket_id,
                    *(event[c] for c in EVENT_COLUMNS[2:-1]),
                    None if detail is None else Jsonb(detail),
                    self._events,
                ]
                self._events += 1
                self._types.add(event["event_type"])

    def _history_data(self, ids: Sequence[int], planned: Sequence[PlannedTicket]) -> list[tuple[str, bytes]]:
        """COPY data of the status histories, replies and ratings of `planned`, per table that gets rows."""
        statuses, replies, ratings = [], [], []
        for ticket_id, plan in zip(ids, planned, strict=True):
            statuses += [[self._org_id, ticket_id, status, at] for at, status in plan.statuses]
            replies += [[self._org_id, ticket_id, r.author, r.public, r.at] for r in plan.replies]
            if plan.rating is not None:
                ratings.append([ticket_id, *(plan.rating[c] for c in RATING_COLUMNS[1:])])
        out = []
        tables = (
            ("ticket_status_changes", STATUS_COLUMNS, statuses),
            ("ticket_replies", REPLY_COLUMNS, replies),
            ("ticket_ratings", RATING_COLUMNS, ratings),
        )
        for (table, columns, rows), types in zip(tables, self._history_types, strict=True):
            if rows:
                out.append(
                    (
                        f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)",
                        self._copy_data(types, rows),
                    )
                )
        return out

    def _copy_data(self, types: Sequence[int], rows: Iterable[Sequence[Any]]) -> bytes:
        """`rows` as binary COPY data of columns of `types` (oids); no server involved.

        Binary rather than text: less to format here, and no timestamps to parse on the server.
        """
        buffer = io.BytesIO()
        with Copy(self._formatting, binary=True, writer=FileWriter(buffer)) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        return buffer.getvalue()

    def _restore(self) -> None:
        """Events mark their hours, tickets are counted and foreign keys are checked again, for the rest
        of the transaction."""
        rollups.suppress_marks(self._session, False)
        ticket_counts.suppress_counts(self._session, False)
        if self._checks_skipped:
            restore_row_checks(self._conn)
        self._checks_skipped = False
        self._restored = True

    def _stop(self, *, cancel: bool) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=cancel)
            self._thread = None

    def _drain(self) -> None:
        self._stop(cancel=False)
        if self._failed is not None:
            raise self._failed
        for future in self._pending:
            future.result()

    def _write(
        self, first_id: int, tickets: bytes, first_event: int, events: bytes, history: list[tuple[str, bytes]]
    ) -> None:
        if self._failed is not None:
            return  # the transaction is aborted: later chunks could only fail the same way
        try:
            with self._conn.cursor() as cur:
                _move_in(cur, _TICKETS, first_id, tickets)
                _move_in(cur, _EVENTS, first_event, events)
                for statement, data in history:
                    with cur.copy(statement) as copy:
                        copy.write(data)
        except BaseException as exc:
            self._failed = exc
            raise


def _stage(conn: Connection[Any], org_id: int, size: int) -> _Staging:
    """Check the organization, draw `size` ticket ids and create the scratch tables."""
    with conn.cursor() as cur:
        # What the foreign keys would check, once: the organization exists and stays (a
        # deletion waits for this transaction), so the per-row checks may be skipped.
        cur.execute("SELECT 1 FROM organizations WHERE id = %s FOR KEY SHARE", (org_id,))
        if cur.fetchone() is None:
            raise TicketError(f"organization {org_id} does not exist", status=404)
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, %s)",
            (size,),
        )
        ids = sorted(row[0] for row in cur.fetchall())
        cur.execute(f"CREATE TEMP TABLE {STAGED_TICKETS} (LIKE tickets) ON COMMIT DROP")
        cur.execute(
            f"CREATE TEMP TABLE {STAGED_EVENTS} ON COMMIT DROP AS"
            f" SELECT {', '.join(EVENT_COLUMNS)}, 0 AS ordinal FROM ticket_events WITH NO DATA"
        )
        # Binary COPY needs each column's exact type: the scratch tables say them.
        return _Staging(
            ids,
            _column_types(cur, STAGED_TICKETS, STAGED_TICKET_COLUMNS),
            _column_types(cur, STAGED_EVENTS, STAGED_EVENT_COLUMNS),
            (
                _column_types(cur, "ticket_status_changes", STATUS_COLUMNS),
                _column_types(cur, "ticket_replies", REPLY_COLUMNS),
                _column_types(cur, "ticket_ratings", RATING_COLUMNS),
            ),
        )


def _move_in(cur: Cursor[Any], route: _Route, first: int, data: bytes) -> None:
    """COPY one chunk into its scratch table, then insert its rows (numbered from `first`) in order.

    COPY and one INSERT ... SELECT are far cheaper than binding 13 arrays of values, and the
    scratch tables stay for the rollups (sentiment is read from the ticket).
    """
    staged_columns = ", ".join(route.staged_columns)
    with cur.copy(f"COPY {route.staged} ({staged_columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(data)
    names = ", ".join(route.columns)
    cur.execute(
        f"INSERT INTO {route.table} ({names}) SELECT {names} FROM {route.staged}"
        f" WHERE {route.number} >= %s ORDER BY {route.number}",
        (first,),
    )


def _column_types(cur: Cursor[Any], table: str, columns: Sequence[str]) -> list[int]:
    """The type oids of `columns` of `table`, in order."""
    cur.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 0")
    assert cur.description is not None
    return [column.type_code for column in cur.description]
