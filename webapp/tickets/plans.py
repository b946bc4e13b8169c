"""What creating a ticket writes, planned without a session: the row's values and its events."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any, NamedTuple

from webapp.clocks.evaluation import AGENT, Reply
from webapp.core.timeutil import hours_between
from webapp.core.vocabulary import DIMENSIONS, RESOLVED_STATUSES, UNSOLVED_STATUSES
from webapp.models import Organization
from webapp.tickets.history import Facts, Rating, derive
from webapp.tickets.rules import TicketError, check_order, checked_instant, checked_times

DERIVED_DIMENSIONS = tuple(d for d in DIMENSIONS if d != "status")


class PlannedTicket(NamedTuple):
    """What creating one ticket writes: its column values, events (derived ones included), status
    history, replies and rating, all without ids."""

    ticket: dict[str, Any]
    events: list[dict[str, Any]]
    statuses: list[tuple[datetime, str]] = []
    replies: list[Reply] = []
    rating: dict[str, Any] | None = None


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


class CheckedTicket(NamedTuple):
    """A new ticket's fields once every rule holds: its moments, status, history, replies and rating."""

    moments: _Moments
    status: str
    history: list[tuple[datetime, str]]
    replies: list[Reply]
    rating: dict[str, Any] | None


def check_ticket(org: Organization, fields: dict[str, Any], now: datetime) -> CheckedTicket:
    """Every rule creating `fields` must meet, or TicketError naming the field; pure and cheap (no
    events built), so an import's rows are checked by it at submit as POST /tickets checks its body.

    Times are the organization's wall clock unless they carry an offset (a time its clocks skip or
    repeat is refused), none in the future; the first response and the resolution not before the
    creation; a status history ascending and agreeing with the fields; replies and rating not before
    the creation; a first_response_at not after the first public agent reply.
    """
    times = checked_times(org, fields, now)
    history = _history(org, fields, times, now)
    created = history[0][0] if history else times.get("created_at", now)
    resolved = times.get("resolved_at")
    status = _status(fields, resolved) if not history else history[-1][1]
    if status in RESOLVED_STATUSES and resolved is None:
        resolved = _last_solve(history) if history else max(now, created)
    replies = _replies(org, fields, created, now)
    first_reply = next((r.at for r in replies if r.public and r.author == AGENT), None)
    first_response = times.get("first_response_at") or first_reply
    if first_reply is not None and first_response > first_reply:
        # The first public agent reply is the first response: a later first_response_at contradicts
        # the replies, and response time and the SLA's first reply would each take another.
        raise TicketError(
            f"first_response_at {first_response.isoformat()} is after the first public agent reply "
            f"({first_reply.isoformat()}); leave it out or make it that reply's time",
            field="first_response_at",
        )
    moments = _Moments(created, first_response, resolved)
    check_order(*moments)
    return CheckedTicket(moments, status, history, replies, _rating(org, fields, created, now))


def plan_ticket(org: Organization, fields: dict[str, Any], now: datetime) -> PlannedTicket:
    """The ticket and events creating `fields` writes, or TicketError (check_ticket); pure (no session,
    no ids).

    Back-fills get first_response / resolved events at their times; a ticket resolved later was
    still open before it, so its earlier events carry status open. An import may also give the
    ticket's replies, rating and status history (then its status and resolution follow from it).
    """
    moments, status, history, replies, rating = check_ticket(org, fields, now)
    created, first_response, resolved = moments
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
        "reopen_count": sum(1 for _ in _reopens(history)),
    }
    if not history:
        history = [(created, "open"), (resolved, status)] if resolved is not None else [(created, status)]
        events = _events(ticket, moments)
    else:
        events = _history_events(ticket, moments, history)
    facts = Facts(
        org_id=org.id,
        created_at=created,
        first_response_at=first_response,
        dimensions={d: ticket[d] for d in DERIVED_DIMENSIONS},
        statuses=history,
        replies=replies,
        rating=Rating(rating["rating"], rating["at"]) if rating else None,
    )
    return PlannedTicket(ticket, events + derive(facts), history, replies, rating)


def _history(
    org: Organization, fields: dict[str, Any], times: dict[str, datetime], now: datetime
) -> list[tuple[datetime, str]]:
    """An imported status history, checked: ascending, the first at created_at, agreeing with the fields."""
    given = fields.get("status_history")
    if not given:
        return []
    history = [
        (checked_instant(org, entry["at"], f"status_history.{i}.at", now), entry["status"])
        for i, entry in enumerate(given)
    ]
    if any(b[0] < a[0] for a, b in pairwise(history)):
        raise TicketError("status_history must be in ascending order of at", field="status_history")
    created = times.get("created_at")
    if created is not None and history[0][0] != created:
        raise TicketError("status_history must begin at created_at", field="status_history")
    last = history[-1][1]
    if fields.get("status") is not None and fields["status"] != last:
        raise TicketError(
            f"status is {fields['status']!r} but status_history ends with {last!r}", field="status"
        )
    resolved = times.get("resolved_at")
    if resolved is not None and (last not in RESOLVED_STATUSES or resolved != _last_solve(history)):
        raise TicketError(
            "resolved_at must be the time status_history last enters resolved or closed", field="resolved_at"
        )
    return history


def _last_solve(history: list[tuple[datetime, str]]) -> datetime | None:
    """When the history last went from unsolved (or nothing) to resolved or closed."""
    last = None
    before = None
    for at, status in history:
        if status in RESOLVED_STATUSES and before not in RESOLVED_STATUSES:
            last = at
        before = status
    return last


def _reopens(history: list[tuple[datetime, str]]) -> list[datetime]:
    return [
        at
        for (_, before), (at, status) in pairwise(history)
        if before in RESOLVED_STATUSES and status in UNSOLVED_STATUSES
    ]


def _replies(org: Organization, fields: dict[str, Any], created: datetime, now: datetime) -> list[Reply]:
    """Imported replies, checked (not before the ticket, not in the future), in time order."""
    out = []
    for i, reply in enumerate(fields.get("replies") or ()):
        name = f"replies.{i}.at"
        if reply.get("at") is None:
            raise TicketError("an imported reply needs its at", field=name)
        at = checked_instant(org, reply["at"], name, now)
        if at < created:
            raise TicketError(f"{name} is before created_at", field=name)
        out.append(Reply(reply["author"], at, reply.get("public", True)))
    return sorted(out, key=lambda r: r.at)


def _rating(
    org: Organization, fields: dict[str, Any], created: datetime, now: datetime
) -> dict[str, Any] | None:
    given = fields.get("satisfaction")
    if not given:
        return None
    at = checked_instant(org, given["at"], "satisfaction.at", now) if given.get("at") else max(now, created)
    if at < created:
        raise TicketError("satisfaction.at is before created_at", field="satisfaction.at")
    return {"org_id": org.id, "rating": given["rating"], "comment": given.get("comment"), "at": at}


def _history_events(
    ticket: dict[str, Any], moments: _Moments, history: list[tuple[datetime, str]]
) -> list[dict[str, Any]]:
    """The events of a ticket imported with its status history: each change as the API writes it."""
    created, first_response, _ = moments

    def status_at(moment: datetime) -> str:
        # A solve at the first response's own instant comes after it: the ticket was answered while
        # it was still unsolved (open, or the status it had).
        current = history[0][1]
        for at, status in history:
            if at > moment or (
                at == moment and status in RESOLVED_STATUSES and current not in RESOLVED_STATUSES
            ):
                break
            current = status
        return current

    events = [_event_values(ticket, "created", created, status=history[0][1])]
    if first_response is not None:
        value = hours_between(created, first_response)
        events.append(
            _event_values(
                ticket, "first_response", first_response, value=value, status=status_at(first_response)
            )
        )
    for (_, before), (at, status) in pairwise(history):
        if before == status:
            continue
        change = {"from": before, "to": status}
        if before in RESOLVED_STATUSES and status in UNSOLVED_STATUSES:
            events.append({**_event_values(ticket, "reopened", at, status=status), "detail": dict(change)})
        events.append({**_event_values(ticket, "status_changed", at, status=status), "detail": change})
        if before not in RESOLVED_STATUSES and status in RESOLVED_STATUSES:
            value = hours_between(created, at)
            events.append(_event_values(ticket, "resolved", at, value=value, status=status))
    if history[0][1] in RESOLVED_STATUSES:
        events.append(_event_values(ticket, "resolved", created, value=0.0, status=history[0][1]))
    return events


def _events(ticket: dict[str, Any], moments: _Moments) -> list[dict[str, Any]]:
    """The created event, and first_response / resolved events where the ticket has those times."""
    created, first_response, resolved = moments
    status = ticket["status"]

    # A solved ticket was open at its creation and first response, even where they share the
    # resolution's instant; an unsolved one had its own status (pending, on_hold) all along.
    before = "open" if status in RESOLVED_STATUSES else status
    events = [_event_values(ticket, "created", created, status=before)]
    if first_response is not None:
        value = hours_between(created, first_response)
        events.append(_event_values(ticket, "first_response", first_response, value=value, status=before))
    if resolved is not None:
        events.append(_event_values(ticket, "resolved", resolved, value=hours_between(created, resolved)))
    return events
