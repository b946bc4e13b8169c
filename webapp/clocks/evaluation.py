"""One ticket's SLA targets under a policy: each target's state, elapsed time and breach instant. Pure.

A target is held by runs of a clock. first_reply runs once, from creation to the first agent reply
(the first public one, or first_response_at if earlier). resolution runs once, from creation to the
solve, but only while the ticket's status is unsolved and not a pause status: a reopen continues
the same run. next_reply runs once per pair: the first public customer reply after a public agent
reply starts it (later customer replies start no other), the next public agent reply stops it.

A run breaches when its elapsed time on the clock exceeds the target ("within the target's hours");
it is achieved when it stops with its elapsed time at most the target. `breach_at` of a running
target is the instant its clock reaches the target; a breach is recorded at that instant. On the
business clock a target used up exactly at closing time is reached then, but not passed until the
clock runs again: a ticket answered overnight, or as the office opens, is in time (its elapsed time
equals the target), and one still waiting is breached from the first open instant on (`due_at`, when
the sweep looks again), its breach dated at closing time. A breached target stays breached.

next_reply's state is over all its pairs: breached if any pair breached, else active while a pair
runs, else achieved, which holds with no pair at all (nothing was late; `pairs` says 0). Its
elapsed time is the latest pair's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webapp.clocks.business_time import US
from webapp.clocks.policy import UNSOLVED_STATUSES, Clock, Policy

AGENT, CUSTOMER = "agent", "customer"
HOUR_US = 3600 * US

Segment = tuple[datetime, datetime | None]  # (from, to); to None: running at `now`


@dataclass(frozen=True)
class Reply:
    """A reply on a ticket; private replies start and stop no clock."""

    author: str
    at: datetime
    public: bool = True


@dataclass(frozen=True)
class TicketFacts:
    """What an SLA evaluation reads of a ticket."""

    created_at: datetime
    priority: str
    first_response_at: datetime | None
    # (instant, status) in time order, the first at creation.
    statuses: tuple[tuple[datetime, str], ...]
    replies: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class Run:
    """One run of a target: how long it has run, and when it passed or will pass the target."""

    metric: str
    cycle_start: datetime
    target_hours: float
    elapsed_us: int
    running: bool
    # Where the clock reached the target of a run that went on past it (a breach), or None.
    passed_at: datetime | None
    # While running within the target: when its clock reaches the target (None: not before 2200).
    breach_at: datetime | None
    # While running within the target: the first instant after which it is past the target, when a
    # breach sweep must look again (breach_at, or the next opening when that is closing time).
    due_at: datetime | None = None
    # For a breach: the first instant after which the run was past its target, when the breach could
    # first be seen (passed_at, or the next opening when the target ran out at closing time).
    over_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """One target of the ticket as GET /tickets/{id}/sla shows it."""

    metric: str
    state: str
    target_hours: float
    elapsed_hours: float
    breach_at: datetime | None
    pairs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The answer's JSON shape; `pairs` only for next_reply."""
        out: dict[str, Any] = {
            "metric": self.metric,
            "state": self.state,
            "target_hours": self.target_hours,
            "elapsed_hours": self.elapsed_hours,
            "breach_at": self.breach_at.isoformat() if self.breach_at else None,
        }
        if self.pairs is not None:
            out["pairs"] = self.pairs
        return out


@dataclass(frozen=True)
class Evaluation:
    """The targets' outcomes and every run behind them."""

    outcomes: tuple[Outcome, ...]
    runs: tuple[Run, ...]

    @property
    def breached_runs(self) -> list[Run]:
        """Runs that passed their target by the evaluation's `now`: the breaches to record."""
        return [run for run in self.runs if run.passed_at is not None]

    @property
    def running_runs(self) -> list[Run]:
        """Runs still within their target and running: the ones a breach sweep must watch."""
        return [run for run in self.runs if run.running and run.passed_at is None and run.due_at]


def first_agent_reply(facts: TicketFacts) -> datetime | None:
    """When the first reply reached the customer: first_response_at or the first public agent reply."""
    answers = [r.at for r in facts.replies if r.public and r.author == AGENT]
    if facts.first_response_at is not None:
        answers.append(facts.first_response_at)
    return min(answers, default=None)


def next_reply_pairs(replies: Sequence[Reply]) -> list[Segment]:
    """(customer reply, next agent reply or None) for each customer reply that follows an agent reply
    with no customer reply between them; public replies only, in time order."""
    pairs: list[Segment] = []
    agent_replied = False
    waiting_since: datetime | None = None
    for reply in sorted((r for r in replies if r.public), key=lambda r: r.at):
        if reply.author == AGENT:
            if waiting_since is not None:
                pairs.append((waiting_since, reply.at))
                waiting_since = None
            agent_replied = True
        elif reply.author == CUSTOMER and agent_replied and waiting_since is None:
            waiting_since = reply.at
    if waiting_since is not None:
        pairs.append((waiting_since, None))
    return pairs


def resolution_segments(statuses: Sequence[tuple[datetime, str]], pauses: Sequence[str]) -> list[Segment]:
    """The spans the resolution clock runs: unsolved statuses that are not pauses."""
    segments: list[Segment] = []
    for (at, status), following in itertools.zip_longest(statuses, statuses[1:]):
        if status in UNSOLVED_STATUSES and status not in pauses:
            segments.append((at, following[0] if following else None))
    return segments


def run(
    metric: str,
    cycle_start: datetime,
    segments: Sequence[Segment],
    target_hours: float,
    clock: Clock,
    now: datetime,
) -> Run:
    """How a target held over `segments` stands at `now` on `clock`."""
    target = round(target_hours * HOUR_US)
    elapsed = 0
    passed_at: datetime | None = None
    over_at: datetime | None = None
    last_from = last_elapsed = 0
    last_start = cycle_start
    for start, stop in segments:
        end = now if stop is None else stop
        a = clock.position(start)
        b = clock.position(max(end, start))
        if passed_at is None and elapsed + (b - a) > target:
            # The clock runs past the target in this segment: breached where it reached it (not
            # before the segment began, when an earlier one stopped exactly at the target).
            reached, over = clock.reaches(a + target - elapsed), clock.passes(a + target - elapsed)
            passed_at = start if reached is None else max(reached, start)
            over_at = start if over is None else max(over, start)
        last_from, last_start, last_elapsed = a, start, elapsed
        elapsed += b - a
    running = bool(segments) and segments[-1][1] is None
    breach_at = due_at = None
    if running and passed_at is None:
        position = last_from + target - last_elapsed
        reached, due = clock.reaches(position), clock.passes(position)
        breach_at = None if reached is None else max(reached, last_start)
        due_at = None if due is None else max(due, last_start)
    return Run(metric, cycle_start, target_hours, elapsed, running, passed_at, breach_at, due_at, over_at)


def _outcome(metric: str, target_hours: float, runs: Sequence[Run], paused: bool) -> Outcome:
    latest = runs[-1] if runs else None
    if any(r.passed_at is not None for r in runs):
        state = "breached"
    elif latest is not None and latest.running:
        state = "active"
    elif paused:
        state = "paused"
    else:
        state = "achieved"
    return Outcome(
        metric=metric,
        state=state,
        target_hours=target_hours,
        elapsed_hours=(latest.elapsed_us if latest else 0) / HOUR_US,
        breach_at=latest.breach_at if state == "active" and latest else None,
        pairs=len(runs) if metric == "next_reply" else None,
    )


def evaluate(facts: TicketFacts, policy: Policy, clock: Clock, now: datetime) -> Evaluation:
    """Every target of the ticket's priority that the policy measures, at `now`."""
    outcomes: list[Outcome] = []
    runs: list[Run] = []
    first_reply = policy.target(facts.priority, "first_reply")
    if first_reply is not None:
        segment = (facts.created_at, first_agent_reply(facts))
        held = [run("first_reply", facts.created_at, [segment], first_reply, clock, now)]
        outcomes.append(_outcome("first_reply", first_reply, held, paused=False))
        runs += held
    next_reply = policy.target(facts.priority, "next_reply")
    if next_reply is not None:
        held = [
            run("next_reply", start, [(start, stop)], next_reply, clock, now)
            for start, stop in next_reply_pairs(facts.replies)
        ]
        outcomes.append(_outcome("next_reply", next_reply, held, paused=False))
        runs += held
    resolution = policy.target(facts.priority, "resolution")
    if resolution is not None:
        segments = resolution_segments(facts.statuses, policy.pause_statuses)
        held = [run("resolution", facts.created_at, segments, resolution, clock, now)]
        paused = bool(facts.statuses) and facts.statuses[-1][1] in policy.pause_statuses
        outcomes.append(_outcome("resolution", resolution, held, paused=paused))
        runs += held
    return Evaluation(tuple(outcomes), tuple(runs))
