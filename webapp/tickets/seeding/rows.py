"""A drawn batch as COPY text: the events written before `now`, and each ticket as they leave it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from webapp.core.vocabulary import EVENT_TYPES
from webapp.tickets.seeding import copy_text as text
from webapp.tickets.seeding.conversation import conversation_text
from webapp.tickets.seeding.history_rows import derived_text, history_text, status_entries
from webapp.tickets.seeding.ticket_counts import counts_text
from webapp.tickets.seeding.timeline import CLOSED, NEVER, OPEN, QUANTUM, RESOLVED, Batch, draw_batch

# A change's key is offset * 8 + rank: one update writes priority, then assignment, then first
# response, then status (the order of webapp.tickets.writes.update_ticket), and each event sees the
# changes whose key is <= its own.
RANK_CREATED, RANK_PRIORITY, RANK_ASSIGNED, RANK_FIRST_RESPONSE, RANK_STATUS = range(5)

Changes = list[tuple[np.ndarray, np.ndarray]]  # per change: key and new value, one per ticket


@dataclass(frozen=True)
class History:
    """Each dimension's changes in time order, from its value at creation."""

    status: Changes
    priority: Changes
    agent: Changes
    initial_priority: np.ndarray
    initial_agent: np.ndarray

    def status_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Status codes of tickets `ix` at keys `at`."""
        return _value_at(self.status, np.full(len(self.initial_agent), OPEN), ix, at)

    def priority_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Priority codes of tickets `ix` at keys `at`."""
        return _value_at(self.priority, self.initial_priority, ix, at)

    def agent_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Agent codes of tickets `ix` at keys `at` (0: unassigned)."""
        return _value_at(self.agent, self.initial_agent, ix, at)


@dataclass(frozen=True)
class Events:
    """The events written, by ticket, then time, then rank: which ticket, when, what, and its value."""

    ix: np.ndarray  # the ticket's index in the batch
    q: np.ndarray
    sub_rank: np.ndarray  # rank * 2 + its place among one change's events
    event_type: np.ndarray
    value_q: np.ndarray  # -1: no value
    detail: np.ndarray


class EncodedBatch(NamedTuple):
    """COPY text of one batch: tickets, events (derived ones but the solves included), how many
    events, replies, ratings and the status history."""

    tickets: bytes
    events: bytes
    n_events: int
    replies: bytes
    ratings: bytes
    status_changes: bytes
    ticket_counts: bytes  # analytics_ticket_counts' rows for these tickets (ticket_counts.py)


def encode_batch(
    rng: np.random.Generator,
    created: np.ndarray,
    utc_offset: np.ndarray,
    first_id: int,
    org_id: int,
    now_s: int,
) -> EncodedBatch:
    """COPY text of one batch of tickets, their events, replies and ratings."""
    batch = draw_batch(rng, created, utc_offset)
    history = _history(batch)
    # The last offset whose instant is before now.
    q_last = (now_s - 1 - created) // QUANTUM
    events = _events(batch, q_last)
    tickets = _ticket_text(batch, history, created, q_last, first_id, org_id)
    replies, ratings, talk = conversation_text(rng, batch, created, q_last, first_id, org_id)
    event_rows = _event_text(batch, history, events, created, first_id, org_id)
    # The status history and the events derived from it, but for the solves (derived.py).
    q, status = status_entries(batch, q_last)
    every, cut = np.arange(len(created)), q_last * 8 + 7
    now_in = (
        history.priority_at(every, cut),
        batch.people.channel,
        batch.people.category,
        history.agent_at(every, cut),
    )
    work = batch.work
    changes = np.stack([work.escalation, work.assignment, work.reassignment], axis=1)
    changes = np.where(changes <= q_last[:, None], changes, NEVER)
    fixed = (batch.people.channel, batch.people.category)
    derived, n_derived = derived_text(q, status, talk, fixed, history, changes, created, first_id, org_id)
    statuses = history_text(q, status, created, first_id, org_id)
    priority, channel, category, agent = now_in
    counts = counts_text(
        created,
        {
            "status": (history.status_at(every, cut), text.STATUS),
            "priority": (priority, text.PRIORITY),
            "channel": (channel, text.CHANNEL),
            "category": (category, text.CATEGORY),
            "assigned_to": (agent, text.AGENT),
        },
        org_id,
    )
    return EncodedBatch(
        tickets, event_rows + derived, len(events.ix) + n_derived, replies, ratings, statuses, counts
    )


def _key(offset: np.ndarray, rank: int) -> np.ndarray:
    return np.where(offset < NEVER, offset * 8 + rank, NEVER)


def _value_at(changes: Changes, initial: np.ndarray, ix: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A dimension of tickets `ix` at keys `at`; `changes` are in time order within each ticket."""
    value = initial[ix]
    for key, new in changes:
        value = np.where(key[ix] <= at, new[ix], value)
    return value


def _history(batch: Batch) -> History:
    people, work, path = batch.people, batch.work, batch.path
    n = len(people.agent)
    return History(
        status=[
            (_key(path.waits_from, RANK_STATUS), path.waiting),
            (_key(work.resolution, RANK_STATUS), np.full(n, RESOLVED)),
            (_key(path.reopen, RANK_STATUS), np.full(n, OPEN)),
            (_key(path.re_resolution, RANK_STATUS), np.full(n, RESOLVED)),
            (_key(path.close, RANK_STATUS), np.full(n, CLOSED)),
        ],
        priority=[(_key(work.escalation, RANK_PRIORITY), work.priority)],
        agent=[
            (_key(work.assignment, RANK_ASSIGNED), people.agent),
            (_key(work.reassignment, RANK_ASSIGNED), people.agent2),
        ],
        initial_priority=people.priority0,
        initial_agent=np.where(people.pre_assigned, people.agent, 0),
    )


def _events(batch: Batch, q_last: np.ndarray) -> Events:
    """Every change's events at or before `q_last`, sorted by ticket, then time, then rank."""
    people, work, path = batch.people, batch.work, batch.path
    n = len(people.agent)
    opened, resolved, closed = np.full(n, OPEN), np.full(n, RESOLVED), np.full(n, CLOSED)
    status, waiting = text.status_detail, path.waiting
    # (offset, rank, place within the change, event type, carries a value, detail codes)
    specs: list[tuple[np.ndarray, int, int, str, bool, np.ndarray | None]] = [
        (np.zeros(n, np.int64), RANK_CREATED, 0, "created", False, None),
        (work.escalation, RANK_PRIORITY, 0, "priority_changed", False,
         text.priority_detail(people.priority0, work.priority)),
        (work.assignment, RANK_ASSIGNED, 0, "assigned", False,
         text.agent_detail(np.full(n, 0), people.agent)),
        (work.reassignment, RANK_ASSIGNED, 0, "assigned", False,
         text.agent_detail(people.agent, people.agent2)),
        (work.first_response, RANK_FIRST_RESPONSE, 0, "first_response", True, None),
        (path.waits_from, RANK_STATUS, 0, "status_changed", False, status(opened, waiting)),
        (work.resolution, RANK_STATUS, 0, "status_changed", False, status(waiting, resolved)),
        (work.resolution, RANK_STATUS, 1, "resolved", True, None),
        (path.reopen, RANK_STATUS, 0, "reopened", False, status(resolved, opened)),
        (path.reopen, RANK_STATUS, 1, "status_changed", False, status(resolved, opened)),
        (path.re_resolution, RANK_STATUS, 0, "status_changed", False, status(opened, resolved)),
        (path.re_resolution, RANK_STATUS, 1, "resolved", True, None),
        (path.close, RANK_STATUS, 0, "status_changed", False, status(resolved, closed)),
    ]  # fmt: skip
    parts = []
    for q, rank, sub, event_type, value, detail in specs:
        ix = np.flatnonzero(q <= q_last)
        m = len(ix)
        parts.append(
            (
                ix,
                q[ix],
                np.full(m, rank * 2 + sub),
                np.full(m, EVENT_TYPES.index(event_type)),
                q[ix] if value else np.full(m, -1),
                np.full(m, 0) if detail is None else detail[ix],
            )
        )
    columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
    order = np.lexsort((columns[2], columns[1], columns[0]))  # by ticket, then time, then rank
    return Events(*(column[order] for column in columns))


def _event_text(
    batch: Batch, history: History, events: Events, created: np.ndarray, first_id: int, org_id: int
) -> bytes:
    """The events as COPY rows of ticket_events, each with the dimensions its ticket had then."""
    ix = events.ix
    at = events.q * 8 + events.sub_rank // 2
    value_q = events.value_q
    return text.encode(
        [
            [text.const(str(org_id), len(ix))],
            [text.ints(first_id + ix)],
            [text.EVENT_TYPE.column(events.event_type)],
            [text.timestamps(created[ix] + QUANTUM * events.q)],
            [text.STATUS.column(history.status_at(ix, at))],
            [text.PRIORITY.column(history.priority_at(ix, at))],
            [text.CHANNEL.column(batch.people.channel[ix])],
            [text.CATEGORY.column(batch.people.category[ix])],
            [text.AGENT.column(history.agent_at(ix, at))],
            text.nullable(text.hundredths(np.maximum(value_q, 0)), value_q < 0),
            [text.DETAIL.column(events.detail)],
        ]
    )


def _ticket_text(
    batch: Batch, history: History, created: np.ndarray, q_last: np.ndarray, first_id: int, org_id: int
) -> bytes:
    """The tickets as COPY rows: the state after each one's last written event."""
    people, work, path = batch.people, batch.work, batch.path
    n = len(created)
    every = np.arange(n)
    cut = q_last * 8 + 7
    q_updated, resolved_q = _last_change(batch, q_last), _resolution(batch, q_last)
    first_response = work.first_response
    return text.encode(
        [
            [text.ints(first_id + every)],
            [text.const(str(org_id), n)],
            [text.SUBJECT.column(people.subject)],
            [text.STATUS.column(history.status_at(every, cut))],
            [text.PRIORITY.column(history.priority_at(every, cut))],
            [text.CHANNEL.column(people.channel)],
            [text.CATEGORY.column(people.category)],
            [text.AGENT.column(history.agent_at(every, cut))],
            text.nullable([text.sentiment(batch.sentiment_milli)], batch.sentiment_null),
            [text.timestamps(created)],
            [text.timestamps(created + QUANTUM * q_updated)],
            text.nullable(
                [text.timestamps(created + QUANTUM * np.minimum(first_response, q_last))],
                first_response > q_last,
            ),
            text.nullable(
                [text.timestamps(created + QUANTUM * np.minimum(resolved_q, q_last))], resolved_q == NEVER
            ),
            [text.ints((path.reopen <= q_last).astype(np.int64))],
        ]
    )


def _last_change(batch: Batch, q_last: np.ndarray) -> np.ndarray:
    """Offset of each ticket's last change at or before `q_last` (0: none since its creation)."""
    work, path = batch.work, batch.path
    changes = (
        work.assignment,
        work.escalation,
        work.reassignment,
        work.first_response,
        work.resolution,
        path.reopen,
        path.re_resolution,
        path.close,
    )
    q_updated = np.zeros(len(work.resolution), np.int64)
    for q_change in changes:
        q_updated = np.maximum(q_updated, np.where(q_change <= q_last, q_change, 0))
    return q_updated


def _resolution(batch: Batch, q_last: np.ndarray) -> np.ndarray:
    """Offset of each ticket's resolution as of `q_last`, NEVER while it is unresolved."""
    work, path = batch.work, batch.path
    # The re-resolution, else unresolved after a reopen, else the first resolution.
    reopened_since = np.where(path.reopen <= q_last, NEVER, work.resolution)
    resolved_q = np.where(path.re_resolution <= q_last, path.re_resolution, reopened_since)
    return np.where(resolved_q <= q_last, resolved_q, NEVER)
