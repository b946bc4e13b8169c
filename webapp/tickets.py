"""Ticket writes: every change updates the ticket and appends its events in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.models import Organization, Ticket, TicketEvent
from webapp.models.tickets import DIMENSIONS, RESOLVED_STATUSES
from webapp.timeutil import as_aware, hours_between, utcnow, zone

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
    out: dict[str, datetime] = {}
    for name in TIME_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        try:
            aware = as_aware(value, tz, name)
        except ValueError as exc:
            raise TicketError(str(exc), field=name) from exc
        if aware > now + CLOCK_SKEW:
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
    """Write planned tickets and their events in the session's transaction, ids in row order.

    Ticket ids come from the tickets' sequence in one statement; tickets go in by COPY into a
    scratch table and one INSERT ... SELECT, events by COPY (their ids and recorded_at from the
    column defaults, assigned in order). The statement-level triggers mark rollup hours once.
    """
    if not planned:
        return BulkResult([], 0, set())
    session.flush()
    conn = session.connection().connection.driver_connection
    with conn.cursor() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, %s)",
            (len(planned),),
        )
        ids = sorted(row[0] for row in cur.fetchall())
        # Tickets go through COPY into a scratch table, then one INSERT ... SELECT (far cheaper than
        # binding 13 arrays of 10k values, and still one INSERT INTO tickets that locks and triggers).
        columns = ", ".join(("id", *TICKET_COLUMNS))
        cur.execute("CREATE TEMP TABLE ticket_import (LIKE tickets) ON COMMIT DROP")
        with cur.copy(f"COPY ticket_import ({columns}) FROM STDIN") as copy:
            for ticket_id, plan in zip(ids, planned, strict=True):
                ticket = plan.ticket
                copy.write_row([ticket_id, *(ticket[c] for c in TICKET_COLUMNS)])
        cur.execute(f"INSERT INTO tickets ({columns}) SELECT {columns} FROM ticket_import ORDER BY id")
        cur.execute("DROP TABLE ticket_import")
        count = 0
        types: set[str] = set()
        with cur.copy(f"COPY ticket_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for ticket_id, plan in zip(ids, planned, strict=True):
                for event in plan.events:
                    detail = event["detail"]
                    copy.write_row(
                        [
                            event["org_id"],
                            ticket_id,
                            *(event[c] for c in EVENT_COLUMNS[2:-1]),
                            None if detail is None else Jsonb(detail),
                        ]
                    )
                    types.add(event["event_type"])
                    count += 1
    return BulkResult(ids, count, types)


def update_ticket(
    session: Session,
    org: Organization,
    ticket: Ticket,
    fields: dict[str, Any],
    now: datetime | None = None,
) -> Change:
    """Apply a partial update and append an event for each change analytics measures."""
    now = now or utcnow()
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


def get_ticket(session: Session, org_id: int, ticket_id: int) -> Ticket | None:
    """The ticket with `ticket_id` if it belongs to `org_id` (None for ids no bigint can hold)."""
    if not 0 < ticket_id <= MAX_ID:
        return None
    return session.scalar(select(Ticket).where(Ticket.id == ticket_id, Ticket.org_id == org_id))


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
