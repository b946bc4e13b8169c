"""Tickets whose SLA clocks must be worked out again.

A trigger (migration 0006) marks every ticket a write inserts or updates, in the write's transaction,
whatever wrote it. A change of the policy, or of the schedule it runs on, marks every ticket of the
organization that may hold a running target. The breach sweep works the marks off.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.core.vocabulary import RESOLVED_STATUSES

# Tickets that may hold a running target: not solved (resolution), not answered (first reply), or
# with a clock running now (a next_reply pair).
_MARK_ORGANIZATION = text(
    "INSERT INTO sla_pending_tickets (ticket_id, org_id)"
    " SELECT id, org_id FROM tickets WHERE org_id = :org"
    " AND (status <> ALL(CAST(:solved AS text[])) OR first_response_at IS NULL)"
    " UNION SELECT ticket_id, org_id FROM sla_clocks WHERE org_id = :org"
    " ON CONFLICT (ticket_id) DO NOTHING"
)


def mark_organization(session: Session, org_id: int) -> None:
    """Mark every ticket of the organization that may hold a running target."""
    session.execute(_MARK_ORGANIZATION, {"org": org_id, "solved": list(RESOLVED_STATUSES)})
