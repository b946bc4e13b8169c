"""A ticket's priority, assignee, channel and category over time, as its own events record them: what
derived events and back-filled events are stamped with (tickets.history, tickets.writes); and the
status a back-filled first response is stamped with, from the ticket's status history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.core.vocabulary import RESOLVED_STATUSES
from webapp.models import Ticket, TicketEvent, TicketStatusChange
from webapp.tickets.history import in_force_at

# The events that say what a ticket's priority, assignee, channel and category were from their
# instant on: its creation and each change of them (made at the time of the write, never
# back-filled). A channel or category changed before those changes had events of their own (before
# migration 0031) stays what its creation event says, as its stored events do.
DIMENSION_SOURCES = ("created", "priority_changed", "assigned", "channel_changed", "category_changed")
TRACKED_DIMENSIONS = ("priority", "assigned_to", "channel", "category")


def tracked_history(session: Session, ticket: Ticket) -> list[tuple[datetime, dict[str, Any]]]:
    """(instant, {priority, assigned_to, channel, category} from then on) in time order, the first at
    creation; empty for a ticket with no events yet."""
    history: list[tuple[datetime, dict[str, Any]]] = []
    for row in session.execute(
        select(TicketEvent.occurred_at, *(getattr(TicketEvent, d) for d in TRACKED_DIMENSIONS))
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.event_type.in_(DIMENSION_SOURCES))
        .order_by(TicketEvent.occurred_at, TicketEvent.id)
    ):
        values = {d: getattr(row, d) for d in TRACKED_DIMENSIONS}
        if not history or history[-1][1] != values:
            history.append((row.occurred_at, values))
    return history


def stamp_back_filled(session: Session, ticket: Ticket, events: list[TicketEvent], now: datetime) -> None:
    """Give events placed before `now` (a back-filled first response or resolution) the priority,
    assignee, channel and category the ticket had at their instant, not the ones this write may have
    just set."""
    past = [e for e in events if e.occurred_at < now and e.event_type not in DIMENSION_SOURCES]
    if not past:
        return
    history = tracked_history(session, ticket)
    if not history:
        return
    for event in past:
        for name, value in in_force_at(history, event.occurred_at).items():
            setattr(event, name, value)


def status_history(session: Session, ticket_id: int) -> list[tuple[datetime, str]]:
    """(instant, status entered) of the ticket's stored status history, in time order."""
    return [
        (row.at, row.status)
        for row in session.execute(
            select(TicketStatusChange.at, TicketStatusChange.status)
            .where(TicketStatusChange.ticket_id == ticket_id)
            .order_by(TicketStatusChange.at, TicketStatusChange.id)
        )
    ]


def stamp_first_response_status(
    session: Session, ticket: Ticket, events: list[TicketEvent], now: datetime
) -> None:
    """Give a back-filled first response (a reply or PATCH placing it before `now`) the status the
    ticket had at its instant, by its status history and this write's own changes, not its status
    now: a ticket resolved today whose first reply was yesterday was answered while open. A solve at
    the very instant counts after it (the answer came first), as in a back-filled ticket's plan."""
    answered = [e for e in events if e.event_type == "first_response" and e.occurred_at < now]
    if not answered:
        return
    statuses = status_history(session, ticket.id)
    statuses += [(e.occurred_at, e.detail["to"]) for e in events if e.event_type == "status_changed"]
    if not statuses:
        return
    statuses.sort(key=lambda entry: entry[0])
    for event in answered:
        status = in_force_at(statuses, event.occurred_at)
        if status in RESOLVED_STATUSES:
            status = in_force_at(statuses, event.occurred_at, before=True)
        event.status = status
