"""Writing a ticket's derived events again: what they are computed from as stored, and the
difference from the rows there, so a write deletes and inserts only the events that changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from webapp.clocks.evaluation import Reply
from webapp.core.vocabulary import DERIVED_EVENT_TYPES
from webapp.models import Ticket, TicketEvent, TicketRating, TicketReply
from webapp.tickets.dimension_history import status_history, tracked_history
from webapp.tickets.history import Facts, Rating, derive
from webapp.tickets.plans import DERIVED_DIMENSIONS


def facts_of(session: Session, ticket: Ticket) -> Facts:
    """What the ticket's derived events are computed from, as stored now."""
    statuses = status_history(session, ticket.id) or [(ticket.created_at, ticket.status)]
    replies = [
        Reply(row.author, row.at, row.public)
        for row in session.execute(
            select(TicketReply.author, TicketReply.at, TicketReply.public)
            .where(TicketReply.ticket_id == ticket.id)
            .order_by(TicketReply.at, TicketReply.id)
        )
    ]
    rated = session.execute(
        select(TicketRating.rating, TicketRating.at).where(TicketRating.ticket_id == ticket.id)
    ).first()
    current = {d: getattr(ticket, d) for d in DERIVED_DIMENSIONS}
    dimension_history = [(at, {**current, **values}) for at, values in tracked_history(session, ticket)]
    return Facts(
        org_id=ticket.org_id,
        created_at=ticket.created_at,
        first_response_at=ticket.first_response_at,
        dimensions=current,
        statuses=statuses,
        replies=replies,
        rating=Rating(rated.rating, rated.at) if rated else None,
        dimension_history=dimension_history,
    )


def event_key(values: Any) -> tuple[Any, ...]:
    """What tells two derived events apart (values rounded, detail in key order), for comparing."""
    detail = values.get("detail")
    rounded = (
        {k: v if isinstance(v, list) else round(float(v), 9) for k, v in detail.items()}
        if isinstance(detail, dict)
        else detail
    )
    value = values.get("value")
    return (
        values["event_type"],
        values["occurred_at"],
        *(values[d] for d in ("status", *DERIVED_DIMENSIONS)),
        None if value is None else round(float(value), 9),
        repr(sorted(rounded.items())) if isinstance(rounded, dict) else rounded,
    )


def sync_derived(session: Session, ticket: Ticket) -> set[str]:
    """Write the ticket's derived events again where they changed; the event types that did.

    Only the events that differ are deleted and inserted, so only their hours are marked dirty.
    """
    session.flush()
    wanted: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for values in derive(facts_of(session, ticket)):
        wanted.setdefault(event_key(values), []).append(values)
    stale: list[int] = []
    touched: set[str] = set()
    columns = ("event_type", "occurred_at", "status", *DERIVED_DIMENSIONS, "value", "detail")
    rows = session.execute(
        select(TicketEvent.id, *(getattr(TicketEvent, c) for c in columns)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.event_type.in_(DERIVED_EVENT_TYPES)
        )
    )
    for row in rows:
        same = wanted.get(event_key(row._mapping))
        if same:
            same.pop()
        else:
            stale.append(row.id)
            touched.add(row.event_type)
    if stale:
        session.execute(delete(TicketEvent).where(TicketEvent.id.in_(stale)))
    fresh = [TicketEvent(ticket_id=ticket.id, **v) for group in wanted.values() for v in group]
    touched |= {e.event_type for e in fresh}
    session.add_all(fresh)
    session.flush()
    return touched
