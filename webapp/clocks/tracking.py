"""SLA state of tickets from the database: per-ticket answers, running clocks and recorded breaches.

Every evaluation reads the ticket, its events and the policy in force at that moment. sla_clocks
holds, for the breach sweep, each running target with the instant it will pass its target. The sweep
works off marked tickets (pending.py) and clocks that are due: it evaluates each again from the
source, so a stale clock never records a breach that did not happen, and records every run that
passed its target once (a unique run key; a second sweep finds it recorded), with an sla_breached
ticket event at the breach instant carrying the ticket's dimensions of that instant.

A sweep locks the tickets it works on (FOR NO KEY UPDATE SKIP LOCKED, in id order): a ticket being
written, or worked on by another sweep, is left for the next one, and its mark or clock stays.

The status history is the ticket's ticket_status_changes, its replies ticket_replies: each public
customer reply after a public agent reply starts a next_reply pair that the next one stops.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from webapp.clocks.evaluation import Evaluation, Reply, Run, TicketFacts, evaluate
from webapp.clocks.policy import Clock, Policy, clock_for, policy_for
from webapp.core.vocabulary import DERIVED_EVENT_TYPES, DIMENSIONS, RESOLVED_STATUSES
from webapp.models import (
    SlaBreach,
    SlaClock,
    SlaPendingTicket,
    Ticket,
    TicketEvent,
    TicketReply,
    TicketStatusChange,
)
from webapp.models.base import MAX_ID

BATCH = 200
# A breach is news for live clients when it is found within this of the instant it could first be
# seen (its instant, or on a business clock the opening after a target that ran out at closing), or
# later (a priority or policy change, a back-dated ticket, a sweep that was down) with its target
# still running or its ticket unsolved (paused): the ticket waits past its target now. One of a
# ticket solved long before it was found (a back-fill of history) is recorded but not pushed.
PUSH_WINDOW = timedelta(minutes=10)
# At most this many late breaches pushed per organization per sweep (all its steps: an import of
# old open tickets records thousands, batch after batch; the sla_breached announcement refreshes
# pages anyway).
LATE_PUSHES = 50


@dataclass(frozen=True)
class Recorded:
    """A breach this sweep recorded."""

    org_id: int
    ticket_id: int
    metric: str
    breach_at: datetime
    target_hours: float
    priority: str
    policy_clock: str
    # The target's run still ran when the breach was found, or its ticket waited unsolved (paused).
    live: bool = False
    # When the breach could first be seen: breach_at, or on a business clock whose target ran out at
    # closing time the next opening (the run is past its target only from then on).
    seen_at: datetime | None = None

    def data(self) -> dict[str, Any]:
        """The sla_breach event's data."""
        return {
            "ticket_id": self.ticket_id,
            "metric": self.metric,
            "breach_at": self.breach_at.isoformat(),
            "target_hours": self.target_hours,
            "priority": self.priority,
            "policy_clock": self.policy_clock,
        }


@dataclass
class Batch:
    """What one sweep step claimed and recorded."""

    claimed: int = 0
    worked_ids: list[int] = field(default_factory=list)
    recorded: list[Recorded] = field(default_factory=list)

    def to_push(self, now: datetime, late: Counter[int] | None = None) -> list[Recorded]:
        """The breaches that are news for live clients: fresh ones, and late ones of targets still
        running or waiting, while the organization's count in `late` (the sweep's, shared by its
        steps; this step's alone when not given) is under LATE_PUSHES."""
        late = Counter() if late is None else late
        out = []
        for r in self.recorded:
            if now - (r.seen_at or r.breach_at) <= PUSH_WINDOW:
                out.append(r)
            elif r.live and late[r.org_id] < LATE_PUSHES:
                late[r.org_id] += 1
                out.append(r)
        return out


@dataclass(frozen=True)
class Loaded:
    """A ticket with what its evaluation reads."""

    ticket: Ticket
    facts: TicketFacts
    # (occurred_at, dimensions) of the ticket's events in time order.
    events: list[tuple[datetime, dict[str, Any]]]

    def dimensions_at(self, instant: datetime) -> dict[str, Any]:
        """The ticket's dimensions at `instant`: its last event's then, with the status it had."""
        index = bisect.bisect_right([at for at, _ in self.events], instant) - 1
        dims = dict(self.events[index][1]) if index >= 0 else self.ticket.dimensions()
        statuses = self.facts.statuses
        position = bisect.bisect_right([at for at, _ in statuses], instant) - 1
        if position >= 0:
            dims["status"] = statuses[position][1]
        return dims


def load(session: Session, tickets: Sequence[Ticket]) -> dict[int, Loaded]:
    """Each ticket with its status history, replies and events."""
    ids = [t.id for t in tickets]
    rows = session.execute(
        select(TicketEvent.ticket_id, TicketEvent.occurred_at, *(getattr(TicketEvent, d) for d in DIMENSIONS))
        .where(TicketEvent.ticket_id.in_(ids), TicketEvent.event_type.not_in(DERIVED_EVENT_TYPES))
        .order_by(TicketEvent.ticket_id, TicketEvent.occurred_at, TicketEvent.id)
    )
    events: dict[int, list[tuple[datetime, dict[str, Any]]]] = {i: [] for i in ids}
    for row in rows:
        events[row.ticket_id].append((row.occurred_at, {d: getattr(row, d) for d in DIMENSIONS}))
    statuses: dict[int, list[tuple[datetime, str]]] = {i: [] for i in ids}
    for row in session.execute(
        select(TicketStatusChange.ticket_id, TicketStatusChange.at, TicketStatusChange.status)
        .where(TicketStatusChange.ticket_id.in_(ids))
        .order_by(TicketStatusChange.ticket_id, TicketStatusChange.at, TicketStatusChange.id)
    ):
        statuses[row.ticket_id].append((row.at, row.status))
    replies: dict[int, list[Reply]] = {i: [] for i in ids}
    for row in session.execute(
        select(TicketReply.ticket_id, TicketReply.author, TicketReply.at, TicketReply.public)
        .where(TicketReply.ticket_id.in_(ids))
        .order_by(TicketReply.ticket_id, TicketReply.at, TicketReply.id)
    ):
        replies[row.ticket_id].append(Reply(row.author, row.at, row.public))
    out = {}
    for ticket in tickets:
        history = statuses[ticket.id]
        if not history or history[-1][1] != ticket.status:
            # Times given out of order (a resolution back-dated before a later change) can leave
            # the history ending elsewhere than the ticket: its status holds from its last write.
            last = history[-1][0] if history else ticket.created_at
            history.append((max(last, ticket.updated_at), ticket.status))
        facts = TicketFacts(
            ticket.created_at,
            ticket.priority,
            ticket.first_response_at,
            tuple(history),
            tuple(replies[ticket.id]),
        )
        out[ticket.id] = Loaded(ticket, facts, events[ticket.id])
    return out


def ticket_sla(
    session: Session, org_id: int, ticket_id: int, now: datetime
) -> tuple[Policy, Evaluation] | None:
    """The ticket's targets under the policy in force, or None when the organization has no such ticket."""
    if not 0 < ticket_id <= MAX_ID:
        return None
    ticket = session.scalar(select(Ticket).where(Ticket.id == ticket_id, Ticket.org_id == org_id))
    if ticket is None:
        return None
    policy = policy_for(session, org_id)
    loaded = load(session, [ticket])[ticket.id]
    return policy, evaluate(loaded.facts, policy, clock_for(session, org_id, policy), now)


def sweep_due(session: Session, *, now: datetime, org_ids: Sequence[int] | None = None) -> Batch:
    """Work on tickets whose clocks are past their breach instant, oldest first."""
    query = select(SlaClock.ticket_id).where(SlaClock.breach_at < now)
    if org_ids is not None:
        query = query.where(SlaClock.org_id.in_(org_ids))
    claimed = session.scalars(
        query.order_by(SlaClock.breach_at).limit(BATCH).with_for_update(skip_locked=True)
    )
    return _work(session, list(dict.fromkeys(claimed)), now)


def sweep_pending(session: Session, *, now: datetime, org_ids: Sequence[int] | None = None) -> Batch:
    """Work on marked tickets, oldest mark first, and clear their marks."""
    query = select(SlaPendingTicket.ticket_id)
    if org_ids is not None:
        query = query.where(SlaPendingTicket.org_id.in_(org_ids))
    claimed = list(
        session.scalars(
            query.order_by(SlaPendingTicket.marked_at).limit(BATCH).with_for_update(skip_locked=True)
        )
    )
    batch = _work(session, claimed, now)
    # Marks of tickets another transaction holds stay for the next sweep; deleted tickets' go.
    existing = set(session.scalars(select(Ticket.id).where(Ticket.id.in_(claimed))))
    held = existing - set(batch.worked_ids)
    session.execute(
        delete(SlaPendingTicket).where(SlaPendingTicket.ticket_id.in_([i for i in claimed if i not in held]))
    )
    return batch


def _work(session: Session, ticket_ids: Sequence[int], now: datetime) -> Batch:
    batch = Batch(claimed=len(ticket_ids))
    if not ticket_ids:
        return batch
    tickets = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.id.in_(ticket_ids))
            .order_by(Ticket.id)
            .with_for_update(key_share=True, skip_locked=True)  # FOR NO KEY UPDATE
            .execution_options(populate_existing=True)
        )
    )
    batch.worked_ids = [t.id for t in tickets]
    if not tickets:
        return batch
    loaded = load(session, tickets)
    policies: dict[int, tuple[Policy, Clock]] = {}
    clocks: list[dict[str, Any]] = []
    breaches: list[tuple[Loaded, Policy, Run]] = []
    for ticket in tickets:
        if ticket.org_id not in policies:
            policy = policy_for(session, ticket.org_id)
            policies[ticket.org_id] = (policy, clock_for(session, ticket.org_id, policy))
        policy, clock = policies[ticket.org_id]
        evaluation = evaluate(loaded[ticket.id].facts, policy, clock, now)
        clocks += [
            {
                "ticket_id": ticket.id,
                "metric": r.metric,
                "org_id": ticket.org_id,
                "cycle_start": r.cycle_start,
                # When the sweep must look again: the clock is past its target from then on.
                "breach_at": r.due_at,
            }
            for r in evaluation.running_runs
        ]
        breaches += [(loaded[ticket.id], policy, r) for r in evaluation.breached_runs]
    ids = [t.id for t in tickets]
    session.execute(delete(SlaClock).where(SlaClock.ticket_id.in_(ids)))
    if clocks:
        session.execute(insert(SlaClock), clocks)
    batch.recorded = _record(session, breaches)
    return batch


def _record(session: Session, breaches: Iterable[tuple[Loaded, Policy, Run]]) -> list[Recorded]:
    """Insert the breaches not recorded yet, each with its sla_breached event; the new ones."""
    by_key = {
        (loaded.ticket.id, run.metric, run.cycle_start): (loaded, policy, run)
        for loaded, policy, run in breaches
    }
    if not by_key:
        return []
    rows = [
        {
            "org_id": loaded.ticket.org_id,
            "ticket_id": loaded.ticket.id,
            "metric": run.metric,
            "cycle_start": run.cycle_start,
            "breach_at": run.passed_at,
            "target_hours": run.target_hours,
        }
        for loaded, _, run in by_key.values()
    ]
    # One statement for any number of rows (executemany), so its compiled form is cached.
    statement = (
        pg_insert(SlaBreach)
        .on_conflict_do_nothing(index_elements=["ticket_id", "metric", "cycle_start"])
        .returning(SlaBreach.ticket_id, SlaBreach.metric, SlaBreach.cycle_start)
    )
    new = [by_key[(row.ticket_id, row.metric, row.cycle_start)] for row in session.execute(statement, rows)]
    recorded = []
    events = []
    for loaded, policy, run in new:
        ticket = loaded.ticket
        events.append(
            {
                "org_id": ticket.org_id,
                "ticket_id": ticket.id,
                "event_type": "sla_breached",
                "occurred_at": run.passed_at,
                "value": None,
                "detail": {
                    "metric": run.metric,
                    "target_hours": run.target_hours,
                    "cycle_start": run.cycle_start.isoformat(),
                    "policy_clock": policy.clock_name,
                },
                **loaded.dimensions_at(run.passed_at),
            }
        )
        recorded.append(
            Recorded(
                ticket.org_id,
                ticket.id,
                run.metric,
                run.passed_at,
                run.target_hours,
                ticket.priority,
                policy.clock_name,
                run.running or ticket.status not in RESOLVED_STATUSES,
                run.over_at,
            )
        )
    if events:
        session.execute(insert(TicketEvent), events)
    return recorded
