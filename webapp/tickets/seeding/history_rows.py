"""A drawn batch's status history and the derived events that follow from it, as COPY text.

tickets.history's definitions worked out from the timelines themselves, so the server only takes
rows: the history is the status each created, status_changed and resolved event carries, repeats
dropped; a backlog step +1 where a span in an unsolved status starts and -1 where it ends; a
next_reply at the agent's answer to the first customer reply after the first response (the only
pair of public agent replies a seeded ticket has), valued the hours between them; a rated event at
the rating, valued 100 when good. Each carries the status, priority and assignee in force then (a
backlog span's -1 those it had just before its end, and a change of priority or assignee inside a
span steps it out and in again), and the ticket's channel and category. The solves stay with
derived.py.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from webapp.core.vocabulary import EVENT_TYPES, GOOD_RATINGS
from webapp.tickets.seeding import copy_text as text
from webapp.tickets.seeding.conversation import Conversation
from webapp.tickets.seeding.timeline import CLOSED, NEVER, ON_HOLD, OPEN, PENDING, QUANTUM, RESOLVED, Batch

STATUS_CHANGE_COPY = "COPY ticket_status_changes (org_id, ticket_id, status, at) FROM STDIN"
UNSOLVED = (OPEN, PENDING, ON_HOLD)
# The end of an instant, as a key of rows.History: every change at that instant is in force.
_WHOLE_INSTANT = 7
_SIGN = text.Vocabulary(("", "-"))
BACKLOG, NEXT_REPLY, RATED = (EVENT_TYPES.index(t) for t in ("backlog", "next_reply", "rated"))
GOOD_FROM = min(GOOD_RATINGS)


def status_entries(batch: Batch, q_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ticket's history as (offset, status) matrices, one column per possible entry in time
    order; an entry after `q_last` (or that never happens) has offset NEVER."""
    work, path = batch.work, batch.path
    n = len(work.resolution)
    q = np.stack(
        [
            np.zeros(n, np.int64),
            path.waits_from,
            work.resolution,
            path.reopen,
            path.re_resolution,
            path.close,
        ],
        axis=1,
    )
    status = np.stack(
        [np.full(n, OPEN), path.waiting, np.full(n, RESOLVED), np.full(n, OPEN), np.full(n, RESOLVED),
         np.full(n, CLOSED)],
        axis=1,
    )  # fmt: skip
    return np.where(q <= q_last[:, None], q, NEVER), status


def history_text(q: np.ndarray, status: np.ndarray, created: np.ndarray, first_id: int, org_id: int) -> bytes:
    """COPY rows of ticket_status_changes, by ticket, then time."""
    present = (q < NEVER).ravel()
    ix = np.repeat(np.arange(len(q)), q.shape[1])[present]
    at = created[ix] + QUANTUM * q.ravel()[present]
    return text.encode(
        [
            [text.const(str(org_id), len(ix))],
            [text.ints(first_id + ix)],
            [text.STATUS.column(status.ravel()[present])],
            [text.timestamps(at)],
        ]
    )


class DimensionHistory(Protocol):
    """rows.History's reads: codes of tickets `ix` at keys `at` (offset * 8 + rank)."""

    def status_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray: ...

    def priority_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray: ...

    def agent_at(self, ix: np.ndarray, at: np.ndarray) -> np.ndarray: ...


def derived_text(
    q: np.ndarray,
    status: np.ndarray,
    talk: Conversation,
    fixed: tuple[np.ndarray, np.ndarray],
    history: DimensionHistory,
    changes: np.ndarray,
    created: np.ndarray,
    first_id: int,
    org_id: int,
) -> tuple[bytes, int]:
    """COPY rows of ticket_events for the backlog steps, next replies and rated events; how many.

    `fixed`: each ticket's channel and category codes (they never change); `history`: its status,
    priority and agent at any key; `changes`: the offsets at which its priority or agent changed (one
    column per kind of change, NEVER where none, or not before now)."""
    n, width = q.shape
    # The offset of the next entry after each (NEVER: none yet); entries are in time order.
    later = np.minimum.accumulate(q[:, ::-1], axis=1)[:, ::-1]
    ends = np.concatenate([later[:, 1:], np.full((n, 1), NEVER)], axis=1)
    unsolved = (q < NEVER) & np.isin(status, UNSOLVED)
    ended = unsolved & (ends < NEVER)
    cells = np.arange(n * width).reshape(n, width)
    starts_at, ends_at = cells[unsolved], cells[ended]
    # A change of priority or agent inside an unsolved span steps the ticket out under the old
    # dimensions and in under the new ones (one instant's changes once).
    moved_ix, moved_q, moved_status = _changes_inside(q, ends, status, unsolved, changes, history)
    answered = np.flatnonzero(talk.answered < NEVER)
    rated = np.flatnonzero(talk.rated < NEVER)
    ix = np.concatenate([starts_at // width, ends_at // width, moved_ix, moved_ix, answered, rated])
    offset = np.concatenate(
        [q.ravel()[starts_at], ends.ravel()[ends_at], moved_q, moved_q, talk.answered[answered],
         talk.rated[rated]]
    )  # fmt: skip
    n_steps = len(starts_at) + len(ends_at) + 2 * len(moved_ix)
    kind = np.repeat([BACKLOG, NEXT_REPLY, RATED], [n_steps, len(answered), len(rated)])
    # The backlog steps carry their span's status, the others the status in force at their instant.
    steps = np.concatenate([status.ravel()[starts_at], status.ravel()[ends_at], moved_status, moved_status])
    others = history.status_at(ix[n_steps:], offset[n_steps:] * 8 + _WHOLE_INSTANT)
    # Each step's dimensions: those in force at its instant, but where a span ends (the -1 of an
    # end or of a change), those in force just before it: what the span had.
    ending = np.concatenate(
        [
            np.zeros(len(starts_at), bool),
            np.ones(len(ends_at) + len(moved_ix), bool),
            np.zeros(len(moved_ix) + len(answered) + len(rated), bool),
        ]
    )
    key = np.where(ending, offset * 8 - 1, offset * 8 + _WHOLE_INSTANT)
    value = np.concatenate(
        [
            np.full(len(starts_at), 100),
            np.full(len(ends_at), -100),
            np.full(len(moved_ix), -100),
            np.full(len(moved_ix), 100),
            talk.answered[answered] - talk.asked[answered],  # quanta are hundredths of an hour
            np.where(talk.rating[rated] >= GOOD_FROM, 10_000, 0),
        ]
    )
    channel, category = fixed
    rows = text.encode(
        [
            [text.const(str(org_id), len(ix))],
            [text.ints(first_id + ix)],
            [text.EVENT_TYPE.column(kind)],
            [text.timestamps(created[ix] + QUANTUM * offset)],
            [text.STATUS.column(np.concatenate([steps, others]))],
            [text.PRIORITY.column(history.priority_at(ix, key))],
            [text.CHANNEL.column(channel[ix])],
            [text.CATEGORY.column(category[ix])],
            [text.AGENT.column(history.agent_at(ix, key))],
            [_SIGN.column((value < 0).astype(np.int64)), *text.hundredths(np.abs(value))],
            [text.const("\\N", len(ix))],
        ]
    )
    return rows, len(ix)


def _changes_inside(
    q: np.ndarray,
    ends: np.ndarray,
    status: np.ndarray,
    unsolved: np.ndarray,
    changes: np.ndarray,
    history: DimensionHistory,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ticket, offset, status of its span) of every instant strictly inside an unsolved span at
    which the ticket's priority or agent changed."""
    found_ix, found_q, found_status = [], [], []
    for c in range(changes.shape[1]):
        at = changes[:, c]
        # The same instant as an earlier column's change: counted there.
        repeated = (changes[:, :c] == at[:, None]).any(axis=1)
        inside = unsolved & (q < at[:, None]) & (at[:, None] < ends) & (at < NEVER)[:, None]
        inside &= ~repeated[:, None]
        tickets, spans = np.nonzero(inside)
        if not len(tickets):
            continue
        moment = at[tickets]
        before, after = moment * 8 - 1, moment * 8 + _WHOLE_INSTANT
        moved = (history.priority_at(tickets, before) != history.priority_at(tickets, after)) | (
            history.agent_at(tickets, before) != history.agent_at(tickets, after)
        )
        found_ix.append(tickets[moved])
        found_q.append(moment[moved])
        found_status.append(status[tickets[moved], spans[moved]])
    if not found_ix:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(found_ix), np.concatenate(found_q), np.concatenate(found_status)
