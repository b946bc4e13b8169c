"""The replies and ratings of a drawn batch, as COPY text of ticket_replies and ticket_ratings.

Every ticket's first response is a public agent reply. Some customers write back (a few twice before
the answer), most get a next answer; agents leave private notes now and then; some solved tickets are
rated, better when the ticket went well (its sentiment). Only what happens before `now` is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webapp.core.vocabulary import REPLY_AUTHORS
from webapp.tickets.seeding import copy_text as text
from webapp.tickets.seeding.population import FIRST_RESPONSE_MEDIAN
from webapp.tickets.seeding.timeline import NEVER, QUANTUM, Batch

FOLLOW_UP_SHARE = 0.45  # customers who write again after the first response
SECOND_FOLLOW_UP_SHARE = 0.3  # of those, who write twice before the answer
ANSWERED_SHARE = 0.85  # follow-ups that get a next answer
PRIVATE_NOTE_SHARE = 0.1
RATED_SHARE = 0.3  # solved tickets that get a rating
AGENT, CUSTOMER = (REPLY_AUTHORS.index(a) for a in ("agent", "customer"))
AUTHOR = text.Vocabulary(REPLY_AUTHORS)
PUBLIC = text.Vocabulary(("f", "t"))

REPLY_COPY = "COPY ticket_replies (org_id, ticket_id, author, public, at) FROM STDIN"
RATING_COPY = "COPY ticket_ratings (ticket_id, org_id, rating, at) FROM STDIN"


@dataclass(frozen=True)
class Conversation:
    """What the derived events need of a batch's replies and ratings (offsets, NEVER: none)."""

    asked: np.ndarray  # the first customer reply after the first response
    answered: np.ndarray  # the agent's public answer to it, if written
    rating: np.ndarray
    rated: np.ndarray  # when the rating came, if written


def _quanta(hours: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.rint(hours * 100)).astype(np.int64)


def conversation_text(
    rng: np.random.Generator,
    batch: Batch,
    created: np.ndarray,
    q_last: np.ndarray,
    first_id: int,
    org_id: int,
) -> tuple[bytes, bytes, Conversation]:
    """COPY text of the batch's replies and ratings, and what the derived events need of them."""
    work, path = batch.work, batch.path
    n = len(created)
    first = work.first_response
    follow = rng.random(n) < FOLLOW_UP_SHARE
    asked = np.where(follow, first + _quanta(4 * rng.lognormal(0, 1.0, n)), NEVER)
    answer_after = _quanta(FIRST_RESPONSE_MEDIAN[work.priority] * rng.lognormal(0, 0.9, n))
    answered = np.where(follow & (rng.random(n) < ANSWERED_SHARE), asked + answer_after + 1, NEVER)
    twice = follow & (rng.random(n) < SECOND_FOLLOW_UP_SHARE)
    asked_again = np.where(twice, asked + 1 + (answer_after * rng.random(n)).astype(np.int64), NEVER)
    noted = np.where(rng.random(n) < PRIVATE_NOTE_SHARE, first + _quanta(rng.exponential(2, n)), NEVER)
    replies = [
        (first, AGENT, 1),
        (asked, CUSTOMER, 1),
        (asked_again, CUSTOMER, 1),
        (answered, AGENT, 1),
        (noted, AGENT, 0),
    ]
    ix_parts, q_parts, author_parts, public_parts = [], [], [], []
    for q, author, public in replies:
        ix = np.flatnonzero(q <= q_last)
        ix_parts.append(ix)
        q_parts.append(q[ix])
        author_parts.append(np.full(len(ix), author))
        public_parts.append(np.full(len(ix), public))
    ix, q = np.concatenate(ix_parts), np.concatenate(q_parts)
    reply_rows = text.encode(
        [
            [text.const(str(org_id), len(ix))],
            [text.ints(first_id + ix)],
            [AUTHOR.column(np.concatenate(author_parts))],
            [PUBLIC.column(np.concatenate(public_parts))],
            [text.timestamps(created[ix] + QUANTUM * q)],
        ]
    )
    solved = np.where(path.re_resolution < NEVER, path.re_resolution, work.resolution)
    solved = np.where(path.reopened & (path.re_resolution == NEVER), NEVER, solved)
    rated_q = np.where(
        (solved < NEVER) & (rng.random(n) < RATED_SHARE), solved + _quanta(rng.exponential(12, n)), NEVER
    )
    mood = 3.2 + 2.5 * batch.sentiment_milli / 1000 + rng.normal(0, 0.9, n)
    rating = np.clip(np.rint(mood), 1, 5).astype(np.int64)
    rated = np.flatnonzero(rated_q <= q_last)
    rating_rows = text.encode(
        [
            [text.ints(first_id + rated)],
            [text.const(str(org_id), len(rated))],
            [text.ints(rating[rated])],
            [text.timestamps(created[rated] + QUANTUM * rated_q[rated])],
        ]
    )
    written = Conversation(
        asked,
        np.where(answered <= q_last, answered, NEVER),
        rating,
        np.where(rated_q <= q_last, rated_q, NEVER),
    )
    return reply_rows, rating_rows, written
