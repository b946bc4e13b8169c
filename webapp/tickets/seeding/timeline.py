"""What happens to each synthetic ticket of a batch: who it is about, and when each change comes.

Every offset counts quanta of 36 s (0.01 h) after the ticket's creation; NEVER marks a change that
does not happen. The draws are made in a fixed order from one generator per batch, so the same
seed gives the same tickets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webapp.core.vocabulary import CHANNELS, PRIORITIES, STATUSES
from webapp.tickets.seeding.copy_text import SUBJECT_COUNT, SUBJECT_FIRST
from webapp.tickets.seeding.population import (
    AGENT_LOAD,
    AGENTS,
    CATEGORIES,
    CATEGORY_EFFORT,
    CATEGORY_SHARE,
    CHANNEL_SHARE,
    CHANNEL_SPEED,
    CLOSED_SHARE,
    ESCALATED_SHARE,
    FIRST_RESPONSE_MEDIAN,
    NIGHT_WAIT_SHARE,
    NULL_SENTIMENT_SHARE,
    ON_HOLD_SHARE,
    PENDING_SHARE,
    PRE_ASSIGNED_SHARE,
    PRIORITY_SHARE,
    REASSIGNED_SHARE,
    REOPENED_SHARE,
    RERESOLVED_SHARE,
    RESOLUTION_MEDIAN,
    UNASSIGNED_SHARE,
)

QUANTUM = 36  # seconds in 0.01 h
OPEN, PENDING, ON_HOLD, RESOLVED, CLOSED = range(len(STATUSES))
NEVER = 1 << 56  # offset of a change that does not happen


@dataclass(frozen=True)
class People:
    """Who and what each ticket is about, as codes into the vocabularies (agent 0: unassigned)."""

    priority0: np.ndarray  # at creation
    channel: np.ndarray
    category: np.ndarray
    subject: np.ndarray
    agent: np.ndarray  # the first owner
    pre_assigned: np.ndarray  # owned from creation, not assigned at triage
    reassigned: np.ndarray
    agent2: np.ndarray  # the owner after a reassignment (agent where there is none)


@dataclass(frozen=True)
class Work:
    """The first response, escalation, (re)assignment and first resolution of each ticket."""

    first_response: np.ndarray
    priority: np.ndarray  # after an escalation
    escalation: np.ndarray
    assignment: np.ndarray
    reassignment: np.ndarray
    resolution: np.ndarray


@dataclass(frozen=True)
class Path:
    """Each ticket's way through the statuses after its first response."""

    waiting: np.ndarray  # the status set with the first response (OPEN: none)
    waits_from: np.ndarray
    reopened: np.ndarray
    reopen: np.ndarray
    re_resolution: np.ndarray
    close: np.ndarray


@dataclass(frozen=True)
class Batch:
    """A batch of tickets, drawn: people, work, path and sentiment (thousandths)."""

    people: People
    work: Work
    path: Path
    sentiment_milli: np.ndarray
    sentiment_null: np.ndarray


def draw_batch(rng: np.random.Generator, created: np.ndarray, utc_offset: np.ndarray) -> Batch:
    """The timelines of tickets created at `created` (epoch seconds) in a zone `utc_offset` from UTC."""
    people = _people(rng, len(created))
    work = _work(rng, people, _first_response(rng, people, created, utc_offset))
    path = _path(rng, work)
    milli, null = _sentiment(rng, work, path)
    return Batch(people, work, path, milli, null)


def _quanta(hours: np.ndarray, minimum: int) -> np.ndarray:
    return np.maximum(minimum, np.rint(hours * 100)).astype(np.int64)


def _people(rng: np.random.Generator, n: int) -> People:
    priority0 = rng.choice(len(PRIORITIES), n, p=PRIORITY_SHARE)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_SHARE)
    category = rng.choice(len(CATEGORIES), n, p=CATEGORY_SHARE)
    subject = SUBJECT_FIRST[category] + (rng.random(n) * SUBJECT_COUNT[category]).astype(np.int64)
    agent = 1 + rng.choice(len(AGENTS), n, p=np.array(AGENT_LOAD) / sum(AGENT_LOAD))
    agent[rng.random(n) < UNASSIGNED_SHARE] = 0
    pre_assigned = (agent > 0) & (rng.random(n) < PRE_ASSIGNED_SHARE)
    reassigned = (agent > 0) & (rng.random(n) < REASSIGNED_SHARE)
    agent2 = np.where(reassigned, (agent - 1 + rng.integers(1, len(AGENTS), n)) % len(AGENTS) + 1, agent)
    return People(priority0, channel, category, subject, agent, pre_assigned, reassigned, agent2)


def _first_response(
    rng: np.random.Generator, people: People, created: np.ndarray, utc_offset: np.ndarray
) -> np.ndarray:
    """Offsets of the first responses: by priority and channel, some waiting for the local morning."""
    n = len(created)
    local_hour = ((created + utc_offset) % 86400) / 3600
    night_wait = np.where(local_hour >= 18, 32 - local_hour, np.where(local_hour < 8, 8 - local_hour, 0.0))
    waits = (people.priority0 < 3) & (rng.random(n) < NIGHT_WAIT_SHARE)
    typical = FIRST_RESPONSE_MEDIAN[people.priority0] * CHANNEL_SPEED[people.channel]
    hours = typical * rng.lognormal(0, 0.9, n)
    return _quanta(hours + np.where(waits, night_wait, 0.0), 1)


def _between(
    rng: np.random.Generator, start: np.ndarray, span: np.ndarray, happens: np.ndarray
) -> np.ndarray:
    """Offsets strictly between `start` and `start + span` where `happens`, else NEVER."""
    return np.where(happens, start + 1 + ((span - 1) * rng.random(len(start))).astype(np.int64), NEVER)


def _work(rng: np.random.Generator, people: People, first_response: np.ndarray) -> Work:
    """Escalations and reassignments land strictly between first response and resolution."""
    n = len(first_response)
    escalated = (people.priority0 < 3) & (rng.random(n) < ESCALATED_SHARE)
    priority = people.priority0 + escalated
    effort = RESOLUTION_MEDIAN[priority] * CATEGORY_EFFORT[people.category]
    work = _quanta(effort * rng.lognormal(0, 1.0, n), 2)
    escalation = _between(rng, first_response, work, escalated)
    reassignment = _between(rng, first_response, work, people.reassigned)
    triaged = (people.agent > 0) & ~people.pre_assigned
    assignment = np.where(triaged, (first_response * rng.random(n)).astype(np.int64), NEVER)
    return Work(first_response, priority, escalation, assignment, reassignment, first_response + work)


def _path(rng: np.random.Generator, work: Work) -> Path:
    """Waiting statuses, reopens (within 70 h, before the earliest close at 72 h) and closes."""
    n = len(work.first_response)
    draw = rng.random(n)
    waiting = np.where(draw < PENDING_SHARE, PENDING, ON_HOLD)
    waiting = np.where(draw < PENDING_SHARE + ON_HOLD_SHARE, waiting, OPEN)
    waits_from = np.where(waiting != OPEN, work.first_response, NEVER)
    reopened = rng.random(n) < REOPENED_SHARE
    reopen_after = _quanta(np.minimum(20 * rng.lognormal(0, 1.0, n), 70), 1)
    reopen = np.where(reopened, work.resolution + reopen_after, NEVER)
    reresolved = reopened & (rng.random(n) < RERESOLVED_SHARE)
    rework = _quanta(RESOLUTION_MEDIAN[work.priority] / 3 * rng.lognormal(0, 1.0, n), 1)
    re_resolution = np.where(reresolved, reopen + rework, NEVER)
    final = np.where(reresolved, re_resolution, np.where(reopened, NEVER, work.resolution))
    closes = (final < NEVER) & (rng.random(n) < CLOSED_SHARE)
    close = np.where(closes, final + _quanta(72 + rng.exponential(24, n), 1), NEVER)
    return Path(waiting, waits_from, reopened, reopen, re_resolution, close)


def _sentiment(rng: np.random.Generator, work: Work, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sentiment in thousandths (worse for slow and reopened tickets), and where it is unknown."""
    n = len(work.resolution)
    typical = 100 * (FIRST_RESPONSE_MEDIAN[work.priority] + RESOLUTION_MEDIAN[work.priority])
    sentiment = rng.normal(0.15, 0.35, n) - 0.12 * np.log(work.resolution / typical) - 0.25 * path.reopened
    milli = np.rint(np.clip(sentiment, -1, 1) * 1000).astype(np.int64)
    return milli, rng.random(n) < NULL_SENTIMENT_SHARE
