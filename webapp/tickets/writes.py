"""Single-ticket writes: every change updates the ticket and appends its events in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from webapp.analytics import agent_rollups, snapshots
from webapp.clocks.evaluation import AGENT
from webapp.core.timeutil import hours_between, utcnow
from webapp.core.vocabulary import RESOLVED_STATUSES
from webapp.models import Organization, Ticket, TicketEvent, TicketRating, TicketReply, TicketStatusChange
from webapp.tickets.derived_events import sync_derived
from webapp.tickets.dimension_history import stamp_back_filled, stamp_first_response_status
from webapp.tickets.plans import plan_ticket
from webapp.tickets.rules import TIME_FIELDS, TicketError, check_order, checked_instant, checked_times

PLAIN_FIELDS = ("subject", "sentiment_score")


@dataclass
class Change:
    """What a write did: the ticket, the events it appended, and the event types it rewrote or removed."""

    ticket: Ticket
    events: list[TicketEvent]
    rewritten: set[str] = field(default_factory=set)

    @property
    def event_types(self) -> list[str]:
        """Every event type the write touched, appended or derived again."""
        return sorted({e.event_type for e in self.events} | self.rewritten)


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
    session.add_all(
        TicketStatusChange(org_id=org.id, ticket_id=ticket.id, status=status, at=at)
        for at, status in planned.statuses
    )
    session.add_all(
        TicketReply(org_id=org.id, ticket_id=ticket.id, author=r.author, public=r.public, at=r.at)
        for r in planned.replies
    )
    if planned.rating is not None:
        session.add(TicketRating(ticket_id=ticket.id, **planned.rating))
    session.flush()
    return _recounted(session, Change(ticket, events))


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
    agent_rollups.forget_ticket(session, ticket.org_id, ticket.id)  # see _recounted
    for name in TIME_FIELDS:
        if name in fields and fields[name] is None:
            # A creation, first response or resolution happened; reopening is a status change.
            raise TicketError(f"{name} cannot be cleared", field=name)
    times = checked_times(org, fields, now)
    if "created_at" in times and times["created_at"] != ticket.created_at:
        raise TicketError("created_at cannot change after a ticket is created", field="created_at")
    _set_plain_fields(ticket, fields)
    events = [
        *_dimension_changes(ticket, fields, now),
        *_priority_change(ticket, fields, now),
        *_assignment(ticket, fields, now),
        *_first_response(ticket, times),
        *_status_change(session, ticket, fields, times, now),
    ]
    if "status" in fields and fields["status"] is None:
        raise TicketError("status cannot be null", field="status")
    ticket.updated_at = now
    stamp_back_filled(session, ticket, events, now)
    stamp_first_response_status(session, ticket, events, now)
    session.add_all(events)
    session.add_all(
        TicketStatusChange(org_id=ticket.org_id, ticket_id=ticket.id, status=e.detail["to"], at=e.occurred_at)
        for e in events
        if e.event_type == "status_changed"
    )
    session.flush()
    return _recounted(session, Change(ticket, events, sync_derived(session, ticket)))


def add_reply(
    session: Session, ticket: Ticket, org: Organization, fields: dict[str, Any], now: datetime | None = None
) -> tuple[TicketReply, Change]:
    """Record a reply (now, or at a back-filled `at`); the first public agent reply sets first_response_at
    (a back-filled one before it moves it there).

    A reply changes no status; its derived events (next replies, one-touch solves) are derived again.
    """
    now = now or utcnow()
    agent_rollups.forget_ticket(session, ticket.org_id, ticket.id)  # see _recounted
    at = (
        checked_instant(org, fields["at"], "at", now)
        if fields.get("at") is not None
        else max(now, ticket.created_at)
    )
    if at < ticket.created_at:
        raise TicketError("at is before the ticket was created", field="at")
    reply = TicketReply(
        org_id=ticket.org_id,
        ticket_id=ticket.id,
        author=fields["author"],
        public=fields.get("public", True),
        at=at,
    )
    session.add(reply)
    events = []
    answered = ticket.first_response_at
    if reply.public and reply.author == AGENT and (answered is None or at < answered):
        if answered is not None:
            # A back-filled reply before the recorded first response is the first response: one
            # instant for the response time and the SLA's first reply, as an import requires.
            _forget_first_response(session, ticket)
        events = _first_response(ticket, {"first_response_at": at})
        stamp_back_filled(session, ticket, events, now)
        stamp_first_response_status(session, ticket, events, now)
        session.add_all(events)
    ticket.updated_at = now
    session.flush()
    change = _recounted(session, Change(ticket, events, sync_derived(session, ticket)))
    if reply.public and not SLA_EVENTS.intersection(change.event_types):  # else marked already
        # Its SLA next_reply verdict moves, counted in the snapshots of the ticket's creation: marked
        # after its events' (as every write marks them), so writers lock snapshot rows in one order.
        snapshots.mark_stale(session, ticket.org_id, ticket.created_at)
    return reply, change


def set_rating(
    session: Session, ticket: Ticket, org: Organization, fields: dict[str, Any], now: datetime | None = None
) -> tuple[TicketRating, Change]:
    """Rate the ticket; the rating with the latest `at` stands (an older one given later changes nothing)."""
    now = now or utcnow()
    agent_rollups.forget_ticket(session, ticket.org_id, ticket.id)  # see _recounted
    at = (
        checked_instant(org, fields["at"], "at", now)
        if fields.get("at") is not None
        else max(now, ticket.created_at)
    )
    if at < ticket.created_at:
        raise TicketError("at is before the ticket was created", field="at")
    rating = session.get(TicketRating, ticket.id, with_for_update=True)
    if rating is None:
        rating = TicketRating(ticket_id=ticket.id, org_id=ticket.org_id, rating=fields["rating"], at=at)
        session.add(rating)
    if at >= rating.at:
        rating.rating, rating.comment, rating.at = fields["rating"], fields.get("comment"), at
    ticket.updated_at = now
    session.flush()
    return rating, _recounted(session, Change(ticket, [], sync_derived(session, ticket)))


# Event types whose write moves the ticket's SLA verdicts (its targets, its clocks' stops and pauses).
SLA_EVENTS = frozenset(
    {"first_response", "resolved", "reopened", "status_changed", "priority_changed", "next_reply"}
)


def _recounted(session: Session, change: Change) -> Change:
    """Bring the agent rollups up to the changed ticket: the difference from its contributions as
    update, reply and rating writes noted them before changing anything (agent_rollups.forget_ticket).
    A change of its SLA verdicts makes the snapshots of its creation's periods stale (they count the
    SLA of the tickets created in them; the events' trigger marks only the events' own periods)."""
    ticket = change.ticket
    agent_rollups.add_ticket(session, ticket.org_id, ticket.id)
    if SLA_EVENTS.intersection(change.event_types):
        snapshots.mark_stale(session, ticket.org_id, ticket.created_at)
    return change


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
    """Fields no event follows: subject and sentiment."""
    for name in PLAIN_FIELDS:
        if name in fields:
            setattr(ticket, name, fields[name] if name != "subject" else (fields[name] or ""))


def _dimension_changes(ticket: Ticket, fields: dict[str, Any], now: datetime) -> list[TicketEvent]:
    """A channel_changed or category_changed event for each of them this write changes: from its
    instant on the ticket's metrics are grouped under the new value, before it under the old one, as
    for a priority or assignee change (tickets.dimension_history)."""
    events = []
    for name in ("channel", "category"):
        if name not in fields:
            continue
        if fields[name] is None:
            raise TicketError(f"{name} cannot be null", field=name)
        if fields[name] != getattr(ticket, name):
            previous = getattr(ticket, name)
            setattr(ticket, name, fields[name])
            events.append(
                _event(ticket, f"{name}_changed", now, detail={"from": previous, "to": fields[name]})
            )
    return events


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


def _forget_first_response(session: Session, ticket: Ticket) -> None:
    """Delete the ticket's first_response event and unset first_response_at (an earlier one follows)."""
    session.execute(
        delete(TicketEvent).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.event_type == "first_response"
        )
    )
    ticket.first_response_at = None


def _last_reopened(session: Session, ticket: Ticket) -> datetime | None:
    """When the ticket was last reopened (its newest reopened event)."""
    return session.scalar(
        select(func.max(TicketEvent.occurred_at)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.event_type == "reopened"
        )
    )


def _last_status_change(session: Session, ticket: Ticket) -> tuple[datetime, str] | None:
    """The ticket's newest status history entry: when, and the status it entered."""
    row = session.execute(
        select(TicketStatusChange.at, TicketStatusChange.status)
        .where(TicketStatusChange.ticket_id == ticket.id)
        .order_by(TicketStatusChange.at.desc(), TicketStatusChange.id.desc())
        .limit(1)
    ).first()
    return (row.at, row.status) if row is not None else None


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
    if resolved_at is not None:
        # A solve back-filled before a later status change would leave the history unsolved after it.
        last = _last_status_change(session, ticket)
        if last is not None and resolved_at < last[0]:
            raise TicketError(
                f"resolved_at is before the ticket's last status change ({last[1]} at {last[0].isoformat()})",
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
