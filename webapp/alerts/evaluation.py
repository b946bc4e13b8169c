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

# A bucket is evaluated this long after it closes: a write stamped just before its end commits a
# moment later, and must be in it. Beat's pass runs every 15 s, so a bucket is evaluated 10 to 25 s
# (plus the queue's wait) after it closes.
GRACE = timedelta(seconds=10)
MAX_SIMULATED_BUCKETS = 5000


class RangeTooLong(ValueError):
    """A simulation over more buckets than MAX_SIMULATED_BUCKETS."""


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
        raise RangeTooLong(
            f"the range holds more than {MAX_SIMULATED_BUCKETS} {rule.granularity} buckets; narrow it"
        )
    transitions, _ = run(session, org_id, rule, tz, buckets, "ok")
    return Simulated(transitions, len(buckets))
