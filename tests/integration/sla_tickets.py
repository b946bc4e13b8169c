"""Tickets with a given status history, written as the write path writes them (ticket row, status
history, events and the events derived from them)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from webapp.core.timeutil import hours_between
from webapp.models import Ticket, TicketEvent, TicketStatusChange
from webapp.tickets.derived_events import sync_derived

SOLVED = ("resolved", "closed")


def seed_ticket(
    session: Session,
    org_id: int,
    history: Sequence[tuple[datetime, str]],
    *,
    priority: str = "normal",
    first_response_at: datetime | None = None,
    channel: str = "email",
    assigned_to: str | None = None,
) -> int:
    """A ticket created at history[0] whose status changed at each later entry; its id (committed)."""
    created, status = history[0]
    solved_at = None
    reopens = 0
    for (_, before), (at, after) in itertools.pairwise(history):
        if after in SOLVED and before not in SOLVED:
            solved_at = at
        if before in SOLVED and after not in SOLVED:
            solved_at = None
            reopens += 1
    ticket = Ticket(
        org_id=org_id,
        subject="sla",
        status=history[-1][1],
        priority=priority,
        channel=channel,
        category="general",
        assigned_to=assigned_to,
        created_at=created,
        updated_at=history[-1][0],
        first_response_at=first_response_at,
        resolved_at=solved_at,
        reopen_count=reopens,
    )
    session.add(ticket)
    session.flush()

    def event(event_type: str, at: datetime, status: str, **extra: Any) -> TicketEvent:
        return TicketEvent(
            org_id=org_id,
            ticket_id=ticket.id,
            event_type=event_type,
            occurred_at=at,
            status=status,
            priority=priority,
            channel=channel,
            category="general",
            assigned_to=assigned_to,
            **extra,
        )

    events = [event("created", created, status)]
    if first_response_at is not None:
        events.append(
            event(
                "first_response", first_response_at, status, value=hours_between(created, first_response_at)
            )
        )
    for (_, before), (at, after) in itertools.pairwise(history):
        if before in SOLVED and after not in SOLVED:
            events.append(event("reopened", at, after, detail={"from": before, "to": after}))
        events.append(event("status_changed", at, after, detail={"from": before, "to": after}))
        if after in SOLVED and before not in SOLVED:
            events.append(event("resolved", at, after, value=hours_between(created, at)))
    session.add_all(events)
    session.add_all(
        TicketStatusChange(org_id=org_id, ticket_id=ticket.id, status=s, at=at) for at, s in history
    )
    session.flush()
    sync_derived(session, ticket)
    session.commit()
    return ticket.id
