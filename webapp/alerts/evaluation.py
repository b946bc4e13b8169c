"""The one evaluation of a rule over closed buckets, in order, from a starting state: the live pass
runs it on each bucket once it has closed, a simulation on a past range from `ok`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from webapp.alerts.conditions import Reading, judge
from webapp.alerts.periods import LONGEST, Bucket, bucket_containing, closed_buckets
from webapp.alerts.readings import Definition, read
from webapp.analytics import cost
from webapp.analytics.window import Window

# A bucket is evaluated this long after it closes: a write stamped just before its end commits a
# moment later, and must be in it. Beat's pass runs every 15 s, so a bucket is evaluated 10 to 25 s
# (plus the queue's wait) after it closes.
GRACE = timedelta(seconds=10)
MAX_SIMULATED_BUCKETS = 5000


class RangeTooLong(ValueError):
    """A simulation over more buckets than MAX_SIMULATED_BUCKETS: like every cost refusal it names
    about how many the range holds and the limit, in its message and its `details`, so a client
    knows how far to narrow it."""

    def __init__(self, granularity: str, estimate: int, limit: int = MAX_SIMULATED_BUCKETS) -> None:
        super().__init__(
            f"the range holds about {estimate:,} {granularity} buckets, more than the limit of "
            f"{limit:,} a simulation evaluates; narrow it"
        )
        self.details = {"estimate": estimate, "limit": limit}


@dataclass(frozen=True)
class Transition:
    """A rule moving into `state` at `bucket`, with what the bucket held."""

    state: str
    bucket: Bucket
    value: float | None
    count: int
    score: float | None
    change_pct: float | None

    def as_dict(self, tz: ZoneInfo, at: datetime) -> dict[str, Any]:
        """The transition as the API and deliveries show it (times in `tz`)."""
        return {
            "state": self.state,
            "bucket": self.bucket.start.astimezone(tz).isoformat(),
            "bucket_end": self.bucket.end.astimezone(tz).isoformat(),
            "value": self.value,
            "count": self.count,
            "score": self.score,
            "change_pct": self.change_pct,
            "at": at.astimezone(tz).isoformat(),
        }


def evaluate(
    rule: Definition, buckets: Sequence[Bucket], readings: Sequence[Reading], state: str
) -> tuple[list[Transition], str]:
    """The transitions the readings of `buckets` (in order) make from `state`, and the state after them.

    A rule fires on the first bucket that meets its condition (and min_count), resolves on the first
    that does not.
    """
    transitions = []
    for bucket, reading in zip(buckets, readings, strict=True):
        verdict = judge(rule.condition, reading, rule.min_count)
        new = "firing" if verdict.met else "ok"
        if new != state:
            transitions.append(
                Transition(new, bucket, reading.value, reading.count, verdict.score, verdict.change_pct)
            )
            state = new
    return transitions, state


def run(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, buckets: Sequence[Bucket], state: str
) -> tuple[list[Transition], str]:
    """Read `buckets` from the database and evaluate them from `state`."""
    if not buckets:
        return [], state
    return evaluate(rule, buckets, read(session, org_id, rule, tz, buckets), state)


@dataclass(frozen=True)
class Simulated:
    """A simulation's transitions, and how many buckets it evaluated."""

    transitions: list[Transition]
    buckets: int


def simulate(
    session: Session,
    org_id: int,
    rule: Definition,
    tz: ZoneInfo,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
) -> Simulated:
    """The transitions the rule would have made from `ok` over the closed buckets of [start, end) (the
    first is the one holding `start`), as live evaluation makes them; delivers nothing."""
    first = bucket_containing(rule.granularity, tz, start).start
    until = min(now - GRACE, end + LONGEST[rule.granularity])
    found = closed_buckets(rule.granularity, tz, since=first, until=until, limit=MAX_SIMULATED_BUCKETS + 1)
    buckets = [bucket for bucket in found if bucket.start < end]
    if len(buckets) > MAX_SIMULATED_BUCKETS:
        raise RangeTooLong(rule.granularity, _bucket_estimate(rule.granularity, tz, first, min(end, until)))
    transitions, _ = run(session, org_id, rule, tz, buckets, "ok")
    return Simulated(transitions, len(buckets))


def _bucket_estimate(granularity: str, tz: ZoneInfo, first: datetime, last: datetime) -> int:
    """About how many buckets [first, last) holds, counted by calendar arithmetic (the buckets built
    stop one past the limit); never at or under the limit it was found to exceed."""
    counted = cost.bucket_count(Window(first, last, tz, granularity))
    return max(counted, MAX_SIMULATED_BUCKETS + 1)
