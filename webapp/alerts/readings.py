"""A rule's buckets read from the database through the analytics' own time series, never the cache:
a stale cached answer must not keep an alert firing (nor keep one quiet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from webapp.alerts.conditions import Anomaly, Change, Condition, Reading
from webapp.alerts.periods import PERIOD, Bucket, bucket_containing, previous_start, wall_key
from webapp.analytics.metric_reads import TimeSeriesRead
from webapp.analytics.window import Window
from webapp.core.filters import Filters

# How much of a series one read takes at most: under analytics.buckets.MAX_BUCKETS at the shortest
# bucket (Lord Howe's 30-minute hour, a 23-hour day).
READ_SPAN = {"hourly": timedelta(hours=4000), "daily": timedelta(days=8000), "weekly": timedelta(weeks=8000)}


@dataclass(frozen=True)
class Definition:
    """What a rule evaluates: a metric with filters at a granularity, its condition and min_count."""

    metric: str
    filters: Filters
    granularity: str
    condition: Condition
    min_count: int


@dataclass(frozen=True)
class Point:
    """A bucket's value (None: no measurement of an average) and how many it counted."""

    value: float | None
    count: int


def read_points(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, Point]]:
    """The rule's metric in each bucket of [start, end) (bucket-aligned), oldest first, each with its
    local start as the series labels it. A long range is read in pieces of at most READ_BUCKETS."""
    out: list[tuple[datetime, Point]] = []
    while start < end:
        # A piece ends on a bucket's start: every bucket is read once, whole.
        piece_end = min(
            end, bucket_containing(rule.granularity, tz, start + READ_SPAN[rule.granularity]).start
        )
        if piece_end <= start:
            piece_end = end
        window = Window(start, piece_end, tz, rule.granularity)
        answer = TimeSeriesRead(rule.metric, window, rule.filters).compute(session, org_id)
        out += [
            (datetime.fromisoformat(point["bucket"]), Point(point["value"], int(point["count"])))
            for point in answer["points"]
        ]
        start = piece_end
    return out


def read(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, buckets: Sequence[Bucket]
) -> list[Reading]:
    """Each bucket's reading: its value and count, and what its condition compares it with.

    One series covers the buckets, the bucket before them (for a change) and, for an anomaly, the
    same buckets `baseline_periods` periods back; a baseline is found by its bucket's local name
    (periods.wall_key) moved back 7 days a period, as periods.baseline_start places it.
    """
    first, last = buckets[0].start, buckets[-1].end
    condition = rule.condition
    periods = condition.baseline_periods if isinstance(condition, Anomaly) else 0
    start = previous_start(rule.granularity, tz, first) if isinstance(condition, Change) else first
    if periods:
        # A day more than the periods: a DST change moves the same local bucket by up to an hour.
        reach = first - (periods * PERIOD + timedelta(days=1))
        start = min(start, bucket_containing(rule.granularity, tz, reach).start)
    series = read_points(session, org_id, rule, tz, start, last)
    by_start = {label.astimezone(UTC): point for label, point in series}
    by_name: dict[object, Point] = {}
    for label, point in series:
        # A repeated autumn hour is named by its first occurrence, as baseline_start takes it (fold=0).
        by_name.setdefault(wall_key(rule.granularity, label), point)
    readings = []
    previous = by_start.get(start) if isinstance(condition, Change) else None
    for bucket in buckets:
        point = by_start[bucket.start]
        name = wall_key(rule.granularity, bucket.start.astimezone(tz))
        baseline = tuple(
            earlier.value
            for k in range(1, periods + 1)
            if (earlier := by_name.get(name - k * PERIOD)) is not None and earlier.value is not None
        )
        readings.append(
            Reading(point.value, point.count, previous.value if previous is not None else None, baseline)
        )
        previous = point
    return readings
