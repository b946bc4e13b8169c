"""A ticket's derived events, computed from its status history, replies and rating. Pure.

The support metrics read events that follow from what happened to a ticket as a whole, so a
back-filled reply or status change can move them anywhere in its past. They are derived here, in one
place, and written again whenever one of their sources changes (derived_events.sync_derived, and plans for a
new ticket):

- `backlog`: +1 when the ticket enters an unsolved status, -1 when it leaves it (a change between
  two unsolved statuses is both), each carrying that status. The backlog at an instant is the sum of
  the steps strictly before it, so it needs no scan of the tickets.
- `solved`: one per change from an unsolved status (or none, at creation) to resolved or closed;
  value 100 when the ticket had at most one public agent reply by then, else 0 (one_touch); detail
  the hours spent in each unsolved status from creation to that solve, and those spans themselves
  (`spans`: [status, start, end] in microseconds since the Unix epoch, cut at the solve), so that a
  business clock can count the same spans in open hours from the event alone.
- `next_reply`: one per stopped next-reply pair (clocks.evaluation.next_reply_pairs), at the agent
  reply, valued the hours from the customer reply that started it.
- `rated`: the standing rating at its time, valued 100 when good, else 0 (csat).

Every derived event carries the priority, assignee, channel and category the ticket had at its
instant (its creation and each change of them: `dimension_history`), and the status it had then (for
backlog steps, the status entered or left). A backlog span whose priority, assignee, channel or
category changes while it lasts is stepped out under the old ones and in under the new ones at the change, so
each step's +1 and -1 meet in one group whatever the ticket is grouped by. Durations are measured
between instants by one function (`Measure`), so a clock other than the calendar can be applied to
the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, TypeVar

from webapp.clocks.business_time import to_us
from webapp.clocks.evaluation import AGENT, Reply, next_reply_pairs
from webapp.core.timeutil import hours_between
from webapp.core.vocabulary import GOOD_RATINGS, RESOLVED_STATUSES, UNSOLVED_STATUSES

T = TypeVar("T")
# Hours between two instants on some clock; the calendar's by default.
Measure = Callable[[datetime, datetime], float]
GOOD, BAD = 100.0, 0.0


@dataclass(frozen=True)
class Span:
    """The ticket had `status` from `start` until `end` (None: still has it)."""

    status: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Rating:
    rating: int
    at: datetime


@dataclass(frozen=True)
class Facts:
    """What the derived events of a ticket are computed from."""

    org_id: int
    created_at: datetime
    first_response_at: datetime | None
    # priority, channel, category, assigned_to as they are now.
    dimensions: dict[str, Any]
    # (at, status) in order, the first at creation.
    statuses: Sequence[tuple[datetime, str]]
    replies: Sequence[Reply] = ()
    rating: Rating | None = None
    # (at, dimensions in force from then) in time order, the first at creation; none: `dimensions`
    # held all along (a new ticket).
    dimension_history: Sequence[tuple[datetime, dict[str, Any]]] = ()

    def dimensions_at(self, instant: datetime, *, before: bool = False) -> dict[str, Any]:
        """The dimensions in force at `instant` (the last entry at it or before; with `before`, the
        last strictly before: what a span ending there had), the first entry's before any."""
        if not self.dimension_history:
            return self.dimensions
        return in_force_at(self.dimension_history, instant, before=before)


def spans(statuses: Sequence[tuple[datetime, str]]) -> list[Span]:
    """The history as spans, each ending where the next entry starts."""
    out = []
    for i, (at, status) in enumerate(statuses):
        end = statuses[i + 1][0] if i + 1 < len(statuses) else None
        out.append(Span(status, at, end))
    return out


def solves(statuses: Sequence[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    """(at, status) of every change into resolved or closed from an unsolved status (or at creation)."""
    out = []
    before: str | None = None
    for at, status in statuses:
        if status in RESOLVED_STATUSES and (before is None or before in UNSOLVED_STATUSES):
            out.append((at, status))
        before = status
    return out


def reopens(statuses: Sequence[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    """(at, status) of every change from resolved or closed back to an unsolved status."""
    out = []
    for (_, before), (at, status) in pairwise(statuses):
        if before in RESOLVED_STATUSES and status in UNSOLVED_STATUSES:
            out.append((at, status))
    return out


def time_in_statuses(
    statuses: Sequence[tuple[datetime, str]], until: datetime, measure: Measure = hours_between
) -> dict[str, float]:
    """Hours in each unsolved status from creation to `until`, on the clock `measure`."""
    hours = dict.fromkeys(UNSOLVED_STATUSES, 0.0)
    for span in spans(statuses):
        if span.status not in hours or span.start >= until:
            continue
        end = until if span.end is None or span.end > until else span.end
        hours[span.status] += measure(span.start, end)
    return hours


def unsolved_spans(statuses: Sequence[tuple[datetime, str]], until: datetime) -> list[list[Any]]:
    """[status, start, end] (microseconds since the Unix epoch) of every span in an unsolved status
    from creation to `until`, cut there: what time_in_statuses measures."""
    out: list[list[Any]] = []
    for span in spans(statuses):
        if span.status not in UNSOLVED_STATUSES or span.start >= until:
            continue
        end = until if span.end is None or span.end > until else span.end
        out.append([span.status, to_us(span.start), to_us(end)])
    return out


def in_force_at(entries: Sequence[tuple[datetime, T]], instant: datetime, *, before: bool = False) -> T:
    """The value of time-ordered (at, value) `entries` in force at `instant`: the last entry at or
    before it (with `before`, strictly before it), the first entry's before any."""
    current = entries[0][1]
    for at, value in entries:
        if at > instant or (before and at == instant):
            break
        current = value
    return current


def status_at(statuses: Sequence[tuple[datetime, str]], instant: datetime) -> str:
    """The status in force at `instant` (the last entry at or before it; the first before any)."""
    return in_force_at(statuses, instant)


def _dimension_changes(facts: Facts, span: Span) -> list[datetime]:
    """The instants strictly inside `span` at which the ticket's dimensions changed."""
    out: list[datetime] = []
    for at, _ in facts.dimension_history[1:]:
        inside = at > span.start and (span.end is None or at < span.end)
        if (
            inside
            and (not out or out[-1] != at)
            and facts.dimensions_at(at) != facts.dimensions_at(at, before=True)
        ):
            out.append(at)
    return out


def agent_replies_by(facts: Facts, instant: datetime) -> int:
    """Public agent replies at or before `instant` (a first_response_at given without a reply is none:
    whether it counted as one or not, such a ticket has at most one)."""
    return sum(1 for r in facts.replies if r.public and r.author == AGENT and r.at <= instant)


def derive(facts: Facts, measure: Measure = hours_between) -> list[dict[str, Any]]:
    """The ticket's derived events as ticket_events values (without ticket_id), in time order."""
    out: list[dict[str, Any]] = []

    def event(
        kind: str, at: datetime, status: str, value: float, detail: Any = None, *, before: bool = False
    ) -> None:
        out.append(
            {
                "org_id": facts.org_id,
                "event_type": kind,
                "occurred_at": at,
                "status": status,
                **facts.dimensions_at(at, before=before),
                "value": value,
                "detail": detail,
            }
        )

    statuses = facts.statuses
    for span in spans(statuses):
        if span.status in UNSOLVED_STATUSES:
            event("backlog", span.start, span.status, 1.0)
            for at in _dimension_changes(facts, span):
                event("backlog", at, span.status, -1.0, before=True)
                event("backlog", at, span.status, 1.0)
            if span.end is not None:
                event("backlog", span.end, span.status, -1.0, before=True)
    for at, status in solves(statuses):
        one_touch = GOOD if agent_replies_by(facts, at) <= 1 else BAD
        detail: dict[str, Any] = {**time_in_statuses(statuses, at, measure)}
        detail["spans"] = unsolved_spans(statuses, at)
        event("solved", at, status, one_touch, detail)
    for start, stop in next_reply_pairs(facts.replies):
        if stop is not None:
            event("next_reply", stop, status_at(statuses, stop), measure(start, stop))
    if facts.rating is not None:
        good = GOOD if facts.rating.rating in GOOD_RATINGS else BAD
        event("rated", facts.rating.at, status_at(statuses, facts.rating.at), good)
    out.sort(key=lambda e: e["occurred_at"])
    return out
