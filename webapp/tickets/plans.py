"""What creating a ticket writes, planned without a session: the row's values and its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from webapp.core.timeutil import hours_between
from webapp.core.vocabulary import DIMENSIONS, RESOLVED_STATUSES
from webapp.models import Organization
from webapp.tickets.rules import TicketError, check_order, checked_times


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


def _status(fields: dict[str, Any], resolved: datetime | None) -> str:
    """The status a new ticket gets: as given, or resolved when a resolution time is given."""
    status = fields.get("status")
    if resolved is None:
        return status or "open"
    if status is None:
        return "resolved"
    if status not in RESOLVED_STATUSES:
        raise TicketError(
            f"resolved_at is set but status is {status!r}; use resolved or closed", field="status"
        )
    return status


class _Moments(NamedTuple):
    created: datetime
    first_response: datetime | None
    resolved: datetime | None


def plan_ticket(org: Organization, fields: dict[str, Any], now: datetime) -> PlannedTicket:
    """The ticket and events creating `fields` writes, or TicketError; pure (no session, no ids).

    Back-fills get first_response / resolved events at their times; a ticket resolved later was
    still open before it, so its earlier events carry status open.
    """
    times = checked_times(org, fields, now)
    created = times.get("created_at", now)
    resolved = times.get("resolved_at")
    status = _status(fields, resolved)
    if status in RESOLVED_STATUSES and resolved is None:
        resolved = max(now, created)
    moments = _Moments(created, times.get("first_response_at"), resolved)
    check_order(*moments)
    ticket = {
        "org_id": org.id,
        "subject": fields.get("subject") or "",
        "status": status,
        "priority": fields.get("priority") or "normal",
        "channel": fields.get("channel") or "web",
        "category": fields.get("category") or "general",
        "assigned_to": fields.get("assigned_to"),
        "sentiment_score": fields.get("sentiment_score"),
        "created_at": moments.created,
        "updated_at": now,
        "first_response_at": moments.first_response,
        "resolved_at": moments.resolved,
        "reopen_count": 0,
    }
    return PlannedTicket(ticket, _events(ticket, moments))


def _events(ticket: dict[str, Any], moments: _Moments) -> list[dict[str, Any]]:
    """The created event, and first_response / resolved events where the ticket has those times."""
    created, first_response, resolved = moments
    status = ticket["status"]

    def status_at(moment: datetime) -> str:
        # A ticket that was resolved later was still open before it.
        if status in RESOLVED_STATUSES and resolved is not None and moment < resolved:
            return "open"
        return status

    events = [_event_values(ticket, "created", created, status=status_at(created))]
    if first_response is not None:
        value, then = hours_between(created, first_response), status_at(first_response)
        events.append(_event_values(ticket, "first_response", first_response, value=value, status=then))
    if resolved is not None:
        events.append(_event_values(ticket, "resolved", resolved, value=hours_between(created, resolved)))
    return events
