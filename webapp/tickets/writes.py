"""Single-ticket writes: every change updates the ticket and appends its events in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.core.timeutil import hours_between, utcnow
from webapp.core.vocabulary import RESOLVED_STATUSES
from webapp.models import Organization, Ticket, TicketEvent
from webapp.tickets.plans import plan_ticket
from webapp.tickets.rules import TIME_FIELDS, TicketError, check_order, checked_times

PLAIN_FIELDS = ("subject", "channel", "category", "sentiment_score")


@dataclass
class Change:
    """What a write did: the ticket and the events it appended."""

    ticket: Ticket
    events: list[TicketEvent]


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


def update_ticket(
    session: Session,
    org: Organization,
    ticket: Ticket,
    fields: dict[str, Any],
    now: datetime | None = None,
) -> Change:
    """Apply a partial update and append an event for each change analytics measures.

    The changes apply in a fixed order (fields, priority, assignment, first response, status), and
    each event carries the dimensions the ticket had once its own change was made.
    """
    now = now or utcnow()
    for name in TIME_FIELDS:
        if name in fields and fields[name] is None:
            # A creation, first response or resolution happened; reopening is a status change.
            raise TicketError(f"{name} cannot be cleared", field=name)
    times = checked_times(org, fields, now)
    if "created_at" in times and times["created_at"] != ticket.created_at:
        raise TicketError("created_at cannot change after a ticket is created", field="created_at")
    _set_plain_fields(ticket, fields)
    events = [
        *_priority_change(ticket, fields, now),
        *_assignment(ticket, fields, now),
        *_first_response(ticket, times),
        *_status_change(session, ticket, fields, times, now),
    ]
    if "status" in fields and fields["status"] is None:
        raise TicketError("status cannot be null", field="status")
    ticket.updated_at = now
    session.add_all(events)
    session.flush()
    return Change(ticket, events)


def _event(
    ticket: Ticket,
    event_type: str,
    occurred_at: datetime,
    *,
    value: float | None = None,
    detail: dict[str, Any] | None = None,
) -> TicketEvent:
    return TicketEvent(
        org_id=ticket.org_id,
        ticket_id=ticket.id,
        event_type=event_type,
        occurred_at=occurred_at,
        value=value,
        detail=detail,
        **ticket.dimensions(),
    )


def _set_plain_fields(ticket: Ticket, fields: dict[str, Any]) -> None:
    """Fields no metric follows through events: subject, channel, category, sentiment."""
    for name in PLAIN_FIELDS:
        if name in fields:
            if name in ("channel", "category") and fields[name] is None:
                raise TicketError(f"{name} cannot be null", field=name)
            setattr(ticket, name, fields[name] if name != "subject" else (fields[name] or ""))


def _priority_change(ticket: Ticket, fields: dict[str, Any], now: datetime) -> list[TicketEvent]:
    if "priority" not in fields or fields["priority"] == ticket.priority:
        return []
    if fields["priority"] is None:
        raise TicketError("priority cannot be null", field="priority")
    previous, ticket.priority = ticket.priority, fields["priority"]
    return [_event(ticket, "priority_changed", now, detail={"from": previous, "to": ticket.priority})]


def _assignment(ticket: Ticket, fields: dict[str, Any], now: datetime) -> list[TicketEvent]:
    if "assigned_to" not in fields or fields["assigned_to"] == ticket.assigned_to:
        return []
    previous, ticket.assigned_to = ticket.assigned_to, fields["assigned_to"]
    return [_event(ticket, "assigned", now, detail={"from": previous, "to": ticket.assigned_to})]


def _first_response(ticket: Ticket, times: dict[str, datetime]) -> list[TicketEvent]:
    """The first response, once: a different time for one already recorded is a conflict."""
    answered = times.get("first_response_at")
    if answered is None:
        return []
    if ticket.first_response_at is not None:
        if ticket.first_response_at != answered:
            raise TicketError(
                "first_response_at is already set and cannot change", field="first_response_at", status=409
            )
        return []
    check_order(ticket.created_at, answered, None)
    ticket.first_response_at = answered
    value = hours_between(ticket.created_at, answered)
    return [_event(ticket, "first_response", answered, value=value)]


def _last_reopened(session: Session, ticket: Ticket) -> datetime | None:
    """When the ticket was last reopened (its newest reopened event)."""
    return session.scalar(
        select(func.max(TicketEvent.occurred_at)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.event_type == "reopened"
        )
    )


def _status_change(
    session: Session, ticket: Ticket, fields: dict[str, Any], times: dict[str, datetime], now: datetime
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
    now_resolved = new_status in RESOLVED_STATUSES
    if was_resolved and now_resolved:
        if resolved_at is not None and resolved_at != ticket.resolved_at:
            raise TicketError(
                "the ticket is already resolved; reopen it before resolving it again",
                field="resolved_at",
                status=409,
            )
        return _plain_status(ticket, new_status, now)
    if not was_resolved and now_resolved:
        return _resolve(session, ticket, new_status, resolved_at, now)
    if was_resolved and not now_resolved:
        return _reopen(ticket, new_status, now)
    return _plain_status(ticket, new_status, now)


def _plain_status(ticket: Ticket, new_status: str, now: datetime) -> list[TicketEvent]:
    """A change between two unsolved (or two solved) statuses: one status_changed event."""
    previous = ticket.status
    if new_status == previous:
        return []
    ticket.status = new_status
    return [_event(ticket, "status_changed", now, detail={"from": previous, "to": new_status})]


def _resolve(
    session: Session, ticket: Ticket, new_status: str, resolved_at: datetime | None, now: datetime
) -> list[TicketEvent]:
    """Unsolved to resolved or closed, now or at a back-filled `resolved_at`."""
    moment = resolved_at or max(now, ticket.created_at)
    check_order(ticket.created_at, None, moment)
    if resolved_at is not None and ticket.reopen_count:
        reopened = _last_reopened(session, ticket)
        if reopened is not None and resolved_at < reopened:
            raise TicketError(
                f"resolved_at is before the ticket was last reopened ({reopened.isoformat()})",
                field="resolved_at",
            )
    previous = ticket.status
    ticket.status = new_status
    ticket.resolved_at = moment
    return [
        _event(ticket, "status_changed", moment, detail={"from": previous, "to": new_status}),
        _event(ticket, "resolved", moment, value=hours_between(ticket.created_at, moment)),
    ]


def _reopen(ticket: Ticket, new_status: str, now: datetime) -> list[TicketEvent]:
    """Solved back to an unsolved status: a reopen, counted on the ticket."""
    previous = ticket.status
    ticket.status = new_status
    ticket.resolved_at = None
    ticket.reopen_count += 1
    detail = {"from": previous, "to": new_status}
    return [
        _event(ticket, "reopened", now, detail=detail),
        _event(ticket, "status_changed", now, detail=dict(detail)),
    ]
