"""Many tickets created at once: every row planned first, then all written in a few statements, or none."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from webapp.core.timeutil import utcnow
from webapp.models import Organization
from webapp.tickets.bulk_writer import BulkResult, BulkWriter
from webapp.tickets.plans import PlannedTicket, plan_ticket
from webapp.tickets.rules import TicketError


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
