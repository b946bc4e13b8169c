"""A drawn batch's status history and the derived events that follow from it, as COPY text.

tickets.history's definitions worked out from the timelines themselves, so the server only takes
rows: the history is the status each created, status_changed and resolved event carries, repeats
dropped; a backlog step +1 where a span in an unsolved status starts and -1 where it ends; a
next_reply at the agent's answer to the first customer reply after the first response (the only
pair of public agent replies a seeded ticket has), valued the hours between them; a rated event at
the rating, valued 100 when good. Each carries the status in force then and the ticket's current
priority, channel, category and assignee. The solves stay with derived.py.
"""

from __future__ import annotations

from collections.abc import Callable

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


def derived_text(
    q: np.ndarray,
    status: np.ndarray,
    talk: Conversation,
    dimensions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    created: np.ndarray,
    first_id: int,
    org_id: int,
    status_at: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[bytes, int]:
    """COPY rows of ticket_events for the backlog steps, next replies and rated events; how many.

    `dimensions`: each ticket's current priority, channel, category and agent codes; `status_at`:
    rows.History.status_at (status codes of tickets at keys)."""
    n, width = q.shape
    # The offset of the next entry after each (NEVER: none yet); entries are in time order.
    later = np.minimum.accumulate(q[:, ::-1], axis=1)[:, ::-1]
    ends = np.concatenate([later[:, 1:], np.full((n, 1), NEVER)], axis=1)
    unsolved = (q < NEVER) & np.isin(status, UNSOLVED)
    ended = unsolved & (ends < NEVER)
    cells = np.arange(n * width).reshape(n, width)
    starts_at, ends_at = cells[unsolved], cells[ended]
    answered = np.flatnonzero(talk.answered < NEVER)
    rated = np.flatnonzero(talk.rated < NEVER)
    ix = np.concatenate([starts_at // width, ends_at // width, answered, rated])
    offset = np.concatenate(
        [q.ravel()[starts_at], ends.ravel()[ends_at], talk.answered[answered], talk.rated[rated]]
    )
    kind = np.repeat(
        [BACKLOG, BACKLOG, NEXT_REPLY, RATED], [len(starts_at), len(ends_at), len(answered), len(rated)]
    )
    # The backlog steps carry their span's status, the others the status in force at their instant.
    steps = np.concatenate([status.ravel()[starts_at], status.ravel()[ends_at]])
    others = status_at(ix[len(steps) :], offset[len(steps) :] * 8 + _WHOLE_INSTANT)
    value = np.concatenate(
        [
            np.full(len(starts_at), 100),
            np.full(len(ends_at), -100),
            talk.answered[answered] - talk.asked[answered],  # quanta are hundredths of an hour
            np.where(talk.rating[rated] >= GOOD_FROM, 10_000, 0),
        ]
    )
    priority, channel, category, agent = dimensions
    rows = text.encode(
        [
            [text.const(str(org_id), len(ix))],
            [text.ints(first_id + ix)],
            [text.EVENT_TYPE.column(kind)],
            [text.timestamps(created[ix] + QUANTUM * offset)],
            [text.STATUS.column(np.concatenate([steps, others]))],
            [text.PRIORITY.column(priority[ix])],
            [text.CHANNEL.column(channel[ix])],
            [text.CATEGORY.column(category[ix])],
            [text.AGENT.column(agent[ix])],
            [_SIGN.column((value < 0).astype(np.int64)), *text.hundredths(np.abs(value))],
            [text.const("\\N", len(ix))],
        ]
    )
    return rows, len(ix)
