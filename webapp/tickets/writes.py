"""Ticket writes: every change updates the ticket and appends its events in one transaction."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg import Connection, Copy, Cursor
from psycopg.copy import FileWriter
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from webapp.analytics import rollups
from webapp.core.timeutil import as_aware, hours_between, in_calendar, utcnow, zone
from webapp.core.vocabulary import DIMENSIONS, RESOLVED_STATUSES
from webapp.models import Organization, Ticket, TicketEvent

# Clocks of the clients drift; a timestamp this far ahead of ours is still "now".
CLOCK_SKEW = timedelta(minutes=5)
TIME_FIELDS = ("created_at", "first_response_at", "resolved_at")
PLAIN_FIELDS = ("subject", "channel", "category", "sentiment_score")


class TicketError(ValueError):
    """A change the platform refuses; `status` is the HTTP status that fits it."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass
class Change:
    """What a write did: the ticket and the events it appended."""

    ticket: Ticket
    events: list[TicketEvent]


def _times(org: Organization, fields: dict[str, Any], now: datetime) -> dict[str, datetime]:
    tz = zone(org.timezone)
    latest = now + CLOCK_SKEW
    out: dict[str, datetime] = {}
    for name in TIME_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        try:
            # In UTC: two times that share one zone object subtract as wall-clock times in Python,
            # and a duration across a clock change would be an hour off.
            aware = in_calendar(as_aware(value, tz, name), name)
        except ValueError as exc:
            raise TicketError(str(exc), field=name) from exc
        if aware > latest:
            raise TicketError(f"{name} is in the future", field=name)
        out[name] = aware
    return out


def _event(
    ticket: Ticket,
    event_type: str,
    occurred_at: datetime,
    *,
    value: float | None = None,
    detail: dict[str, Any] | None = None,
    status: str | None = None,
) -> TicketEvent:
    dims = ticket.dimensions()
    if status is not None:
        dims["status"] = status
    return TicketEvent(
        org_id=ticket.org_id,
        ticket_id=ticket.id,
        event_type=event_type,
        occurred_at=occurred_at,
        value=value,
        detail=detail,
        **dims,
    )


def _check_order(created: datetime, first_response: datetime | None, resolved: datetime | None) -> None:
    if first_response is not None and first_response < created:
        raise TicketError("first_response_at is before created_at", field="first_response_at")
    if resolved is not None and resolved < created:
        raise TicketError("resolved_at is before created_at", field="resolved_at")


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


# Scratch tables of a bulk write (temporary, dropped at the latest with the transaction).
STAGED_TICKETS = "ticket_import"
STAGED_EVENTS = "event_import"
STAGED_TICKET_COLUMNS = ("id", *TICKET_COLUMNS)
STAGED_EVENT_COLUMNS = (*EVENT_COLUMNS, "ordinal")
# The tables a bulk write inserts into, whose foreign-key checks it may skip (skip_row_checks).
BULK_TABLES = ("tickets", "ticket_events", "analytics_metrics")


class PlannedTicket(NamedTuple):
    """What creating one ticket writes: its column values and its events, all without ids."""

    ticket: dict[str, Any]
    events: list[dict[str, Any]]


def _event_values(
    ticket: dict[str, Any],
    event_type: str,
    occurred_at: datetime,
    *,
    value: float | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    dims = {name: ticket[name] for name in DIMENSIONS}
    if status is not None:
        dims["status"] = status
    return {
        "org_id": ticket["org_id"],
        "event_type": event_type,
        "occurred_at": occurred_at,
        "value": value,
        "detail": None,
        **dims,
    }


def plan_ticket(org: Organization, fields: dict[str, Any], now: datetime) -> PlannedTicket:
    """The ticket and events creating `fields` writes, or TicketError; pure (no session, no ids).

    Back-fills get first_response / resolved events at their times; a ticket resolved later was
    still open before it, so its earlier events carry status open.
    """
    times = _times(org, fields, now)
    created = times.get("created_at", now)
    first_response = times.get("first_response_at")
    resolved = times.get("resolved_at")
    status = fields.get("status")
    if resolved is not None:
        if status is None:
            status = "resolved"
        elif status not in RESOLVED_STATUSES:
            raise TicketError(
                f"resolved_at is set but status is {status!r}; use resolved or closed", field="status"
            )
    status = status or "open"
    if status in RESOLVED_STATUSES and resolved is None:
        resolved = max(now, created)
    _check_order(created, first_response, resolved)

    ticket = {
        "org_id": org.id,
        "subject": fields.get("subject") or "",
        "status": status,
        "priority": fields.get("priority") or "normal",
        "channel": fields.get("channel") or "web",
        "category": fields.get("category") or "general",
        "assigned_to": fields.get("assigned_to"),
        "sentiment_score": fields.get("sentiment_score"),
        "created_at": created,
        "updated_at": now,
        "first_response_at": first_response,
        "resolved_at": resolved,
        "reopen_count": 0,
    }

    def status_at(moment: datetime) -> str:
        # A ticket that was resolved later was still open before it.
        if status in RESOLVED_STATUSES and resolved is not None and moment < resolved:
            return "open"
        return status

    events = [_event_values(ticket, "created", created, status=status_at(created))]
    if first_response is not None:
        events.append(
            _event_values(
                ticket,
                "first_response",
                first_response,
                value=hours_between(created, first_response),
                status=status_at(first_response),
            )
        )
    if resolved is not None:
        events.append(_event_values(ticket, "resolved", resolved, value=hours_between(created, resolved)))
    return PlannedTicket(ticket, events)


def create_ticket(
    session: Session, org: Organization, fields: dict[str, Any], now: datetime | None = None
) -> Change:
    """Insert a ticket with its created event, and first_response / resolved events for back-fills."""
    planned = plan_ticket(org, fields, now or utcnow())
    ticket = Ticket(**planned.ticket)
    session.add(ticket)
    session.flush()
    events = [TicketEvent(ticket_id=ticket.id, **values) for values in planned.events]
    session.add_all(events)
    session.flush()
    return Change(ticket, events)


@dataclass
class BulkResult:
    """What a bulk create wrote: the new tickets' ids (in row order) and its events by type."""

    ticket_ids: list[int]
    events: int
    event_types: set[str]


class BulkRejected(TicketError):
    """Some rows failed plan_ticket's checks, so nothing was written; `errors` has (0-based row, error)."""

    def __init__(self, errors: list[tuple[int, TicketError]]) -> None:
        super().__init__(f"{len(errors)} tickets are invalid; nothing was written")
        self.errors = errors


def create_tickets_bulk(
    session: Session, org: Organization, rows: Sequence[dict[str, Any]], now: datetime | None = None
) -> BulkResult:
    """create_ticket for many rows at once: the same tickets and events, in a few statements.

    Every row is planned first; if any fails, BulkRejected lists them all and nothing is written.
    The writes run in the session's transaction, so the caller's commit or rollback covers them.
    """
    now = now or utcnow()
    planned: list[PlannedTicket] = []
    errors: list[tuple[int, TicketError]] = []
    for index, fields in enumerate(rows):
        try:
            planned.append(plan_ticket(org, fields, now))
        except TicketError as exc:
            errors.append((index, exc))
    if errors:
        raise BulkRejected(errors)
    return insert_planned(session, planned)


def insert_planned(session: Session, planned: Sequence[PlannedTicket]) -> BulkResult:
    """Write planned tickets of one organization and their events in the session's transaction.

    Ids are in row order; see BulkWriter for how the rows and their rollups are written.
    """
    if not planned:
        return BulkResult([], 0, set())
    org_ids = {plan.ticket["org_id"] for plan in planned}
    if len(org_ids) > 1:
        raise ValueError("a bulk write holds the tickets of one organization")
    with BulkWriter(session, org_ids.pop(), len(planned)) as writer:
        writer.add(planned)
        return writer.finish()


class BulkWriter:
    """Writes the planned tickets of one organization and their events, chunk by chunk, in a thread.

    Ticket ids for up to `size` tickets are drawn from the sequence up front and handed out in the
    order tickets are added. Each added chunk goes to a background thread that COPYs it into scratch
    tables and moves it on with one INSERT ... SELECT per table, so the database writes one chunk
    while the caller checks the next (the thread waits on the server with the GIL released). The
    caller must not use the session until finish() or close() returns.

    finish() adds the new events' rollups to analytics_metrics from the scratch tables, in the same
    transaction (rollups.merge_new_events): their hours are never marked dirty, and no refresh has to
    rebuild them from every event of those hours. close() (or leaving the with block) without
    finish() waits for the thread and leaves the partial write to the caller's rollback.
    """

    def __init__(self, session: Session, org_id: int, size: int) -> None:
        self._session = session
        self._org_id = org_id
        session.flush()
        self._conn: Connection[Any] = session.connection().connection.driver_connection
        with self._conn.cursor() as cur:
            # What the foreign keys would check, once: the organization exists and stays (a
            # deletion waits for this transaction), so the per-row checks may be skipped below.
            cur.execute("SELECT 1 FROM organizations WHERE id = %s FOR KEY SHARE", (org_id,))
            if cur.fetchone() is None:
                raise TicketError(f"organization {org_id} does not exist", status=404)
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, %s)",
                (size,),
            )
            self._ids = sorted(row[0] for row in cur.fetchall())
            cur.execute(f"CREATE TEMP TABLE {STAGED_TICKETS} (LIKE tickets) ON COMMIT DROP")
            cur.execute(
                f"CREATE TEMP TABLE {STAGED_EVENTS} ON COMMIT DROP AS"
                f" SELECT {', '.join(EVENT_COLUMNS)}, 0 AS ordinal FROM ticket_events WITH NO DATA"
            )
            # Binary COPY needs each column's exact type: the scratch tables say them.
            self._ticket_types = _column_types(cur, STAGED_TICKETS, STAGED_TICKET_COLUMNS)
            self._event_types = _column_types(cur, STAGED_EVENTS, STAGED_EVENT_COLUMNS)
        # Every ticket and event is written here right after its organization was checked and its
        # ticket inserted, so the per-row foreign-key triggers would only repeat that.
        self._checks_skipped = skip_row_checks(self._conn, BULK_TABLES)
        # finish() adds the events to the rollups: the insert trigger must not mark them. Nothing
        # else uses the transaction until then (one setting for all chunks: fewer round trips).
        rollups.suppress_marks(session, True)
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
        self._pending.append(self._thread.submit(self._write, ids[0], tickets, first_event, events))

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

    def finish(self) -> BulkResult:
        """Wait for every chunk, add the rollups, drop the scratch tables; the caller commits."""
        self._drain()
        rollups.merge_new_events(
            self._session, org_id=self._org_id, events=STAGED_EVENTS, tickets=STAGED_TICKETS
        )
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

    def _restore(self) -> None:
        """Events mark their hours and foreign keys are checked again, for the rest of the transaction."""
        rollups.suppress_marks(self._session, False)
        if self._checks_skipped:
            self._conn.execute("SET LOCAL session_replication_role = origin")
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

    def _write(self, first_id: int, tickets: bytes, first_event: int, events: bytes) -> None:
        if self._failed is not None:
            return  # the transaction is aborted: later chunks could only fail the same way
        try:
            with self._conn.cursor() as cur:
                # COPY into a scratch table, then one INSERT ... SELECT: far cheaper than binding 13
                # arrays of values, and the scratch tables stay for the rollups (sentiment is read
                # from the ticket).
                columns = ", ".join(STAGED_TICKET_COLUMNS)
                with cur.copy(f"COPY {STAGED_TICKETS} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(tickets)
                cur.execute(
                    f"INSERT INTO tickets ({columns}) SELECT {columns} FROM {STAGED_TICKETS}"
                    " WHERE id >= %s ORDER BY id",
                    (first_id,),
                )
                with cur.copy(
                    f"COPY {STAGED_EVENTS} ({', '.join(STAGED_EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(events)
                columns = ", ".join(EVENT_COLUMNS)
                cur.execute(
                    f"INSERT INTO ticket_events ({columns}) SELECT {columns} FROM {STAGED_EVENTS}"
                    " WHERE ordinal >= %s ORDER BY ordinal",
                    (first_event,),
                )
        except BaseException as exc:
            self._failed = exc
            raise


def _column_types(cur: Cursor[Any], table: str, columns: Sequence[str]) -> list[int]:
    """The type oids of `columns` of `table`, in order."""
    cur.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 0")
    assert cur.description is not None
    return [column.type_code for column in cur.description]


def skip_row_checks(conn: Connection[Any], tables: Sequence[str]) -> bool:
    """Switch off the per-row foreign-key triggers for the rest of the transaction, where allowed.

    For bulk writers that already guarantee what those triggers check (session_replication_role =
    replica; the caller sets it back to origin when done). Only a role allowed to set it may, and
    only when `tables` have no triggers of their own, which replica mode would silently skip too
    (triggers enabled ALWAYS, such as the rollup dirty marks, fire in replica mode as well).
    """
    own_triggers = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = ANY(CAST(%s AS regclass[]))"
        " AND NOT tgisinternal AND tgenabled <> 'A'",
        (list(tables),),
    ).fetchone()
    if own_triggers is None or own_triggers[0]:
        return False
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def update_ticket(
    session: Session,
    org: Organization,
    ticket: Ticket,
    fields: dict[str, Any],
    now: datetime | None = None,
) -> Change:
    """Apply a partial update and append an event for each change analytics measures."""
    now = now or utcnow()
    for name in TIME_FIELDS:
        if name in fields and fields[name] is None:
            # A creation, first response or resolution happened; reopening is a status change.
            raise TicketError(f"{name} cannot be cleared", field=name)
    times = _times(org, fields, now)
    events: list[TicketEvent] = []

    if "created_at" in times and times["created_at"] != ticket.created_at:
        raise TicketError("created_at cannot change after a ticket is created", field="created_at")

    for name in PLAIN_FIELDS:
        if name in fields:
            if name in ("channel", "category") and fields[name] is None:
                raise TicketError(f"{name} cannot be null", field=name)
            setattr(ticket, name, fields[name] if name != "subject" else (fields[name] or ""))

    if "priority" in fields and fields["priority"] != ticket.priority:
        if fields["priority"] is None:
            raise TicketError("priority cannot be null", field="priority")
        previous = ticket.priority
        ticket.priority = fields["priority"]
        events.append(
            _event(ticket, "priority_changed", now, detail={"from": previous, "to": ticket.priority})
        )

    if "assigned_to" in fields and fields["assigned_to"] != ticket.assigned_to:
        previous = ticket.assigned_to
        ticket.assigned_to = fields["assigned_to"]
        events.append(_event(ticket, "assigned", now, detail={"from": previous, "to": ticket.assigned_to}))

    if "first_response_at" in times:
        answered = times["first_response_at"]
        if ticket.first_response_at is not None and ticket.first_response_at != answered:
            raise TicketError(
                "first_response_at is already set and cannot change", field="first_response_at", status=409
            )
        if ticket.first_response_at is None:
            _check_order(ticket.created_at, answered, None)
            ticket.first_response_at = answered
            events.append(
                _event(
                    ticket,
                    "first_response",
                    answered,
                    value=hours_between(ticket.created_at, answered),
                )
            )

    events.extend(_status_change(ticket, fields, times, now))
    if "status" in fields and fields["status"] is None:
        raise TicketError("status cannot be null", field="status")

    ticket.updated_at = now
    session.add_all(events)
    session.flush()
    return Change(ticket, events)


def _last_reopened(ticket: Ticket) -> datetime | None:
    """When the ticket was last reopened (its newest reopened event)."""
    session = object_session(ticket)
    if session is None:
        return None
    return session.scalar(
        select(func.max(TicketEvent.occurred_at)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.event_type == "reopened"
        )
    )


def _status_change(
    ticket: Ticket, fields: dict[str, Any], times: dict[str, datetime], now: datetime
) -> list[TicketEvent]:
    new_status = fields.get("status") or ticket.status
    resolved_at = times.get("resolved_at")
    was_resolved = ticket.status in RESOLVED_STATUSES
    if resolved_at is not None and "status" not in fields and not was_resolved:
        new_status = "resolved"
    if resolved_at is not None and new_status not in RESOLVED_STATUSES:
        raise TicketError(
            f"resolved_at is set but status is {new_status!r}; use resolved or closed", field="status"
        )

    events: list[TicketEvent] = []
    previous = ticket.status
    now_resolved = new_status in RESOLVED_STATUSES

    if was_resolved and now_resolved:
        if resolved_at is not None and resolved_at != ticket.resolved_at:
            raise TicketError(
                "the ticket is already resolved; reopen it before resolving it again",
                field="resolved_at",
                status=409,
            )
        if new_status != previous:
            ticket.status = new_status
            events.append(_event(ticket, "status_changed", now, detail={"from": previous, "to": new_status}))
        return events

    if not was_resolved and now_resolved:
        moment = resolved_at or max(now, ticket.created_at)
        _check_order(ticket.created_at, None, moment)
        if resolved_at is not None and ticket.reopen_count:
            reopened = _last_reopened(ticket)
            if reopened is not None and resolved_at < reopened:
                raise TicketError(
                    f"resolved_at is before the ticket was last reopened ({reopened.isoformat()})",
                    field="resolved_at",
                )
        ticket.status = new_status
        ticket.resolved_at = moment
        events.append(_event(ticket, "status_changed", moment, detail={"from": previous, "to": new_status}))
        events.append(_event(ticket, "resolved", moment, value=hours_between(ticket.created_at, moment)))
        return events

    if was_resolved and not now_resolved:
        ticket.status = new_status
        ticket.resolved_at = None
        ticket.reopen_count += 1
        events.append(_event(ticket, "reopened", now, detail={"from": previous, "to": new_status}))
        events.append(_event(ticket, "status_changed", now, detail={"from": previous, "to": new_status}))
        return events

    if new_status != previous:
        ticket.status = new_status
        events.append(_event(ticket, "status_changed", now, detail={"from": previous, "to": new_status}))
    return events


MAX_ID = 2**63 - 1


def get_ticket(session: Session, org_id: int, ticket_id: int, *, for_update: bool = False) -> Ticket | None:
    """The ticket with `ticket_id` if it belongs to `org_id` (None for ids no bigint can hold).

    `for_update` locks its row until the transaction ends: changes of one ticket are made one after
    another, each on the state the one before left (two PATCHes read together would both write).
    """
    if not 0 < ticket_id <= MAX_ID:
        return None
    query = select(Ticket).where(Ticket.id == ticket_id, Ticket.org_id == org_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalar(query)


def list_tickets(
    session: Session,
    org_id: int,
    *,
    filters: dict[str, list[str | None]],
    limit: int,
    after_id: int | None,
) -> list[Ticket]:
    """Newest first, `limit` tickets older than `after_id` that match every filter."""
    query = select(Ticket).where(Ticket.org_id == org_id)
    for name, values in filters.items():
        column = getattr(Ticket, name)
        present = [v for v in values if v is not None]
        clause = column.in_(present) if present else None
        if None in values:
            clause = column.is_(None) if clause is None else (clause | column.is_(None))
        query = query.where(clause)
    if after_id is not None:
        query = query.where(Ticket.id < after_id)
    return list(session.scalars(query.order_by(Ticket.id.desc()).limit(limit)))
