"""Tickets read back: one of an organization's (locked for a change, if asked), or a filtered page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.models import Ticket
from webapp.models.base import MAX_ID


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
