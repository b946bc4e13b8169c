"""A rule's buckets read from the database through the analytics' own time series, never the cache:
a stale cached answer must not keep an alert firing (nor keep one quiet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from webapp.alerts.conditions import Anomaly, Change, Condition, Reading
from webapp.alerts.periods import LONGEST, PERIOD, Bucket, bucket_containing, previous_start, wall_key
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
    local start as the series labels it. A long range is read in pieces of READ_SPAN at most."""
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


def _windows(rule: Definition, tz: ZoneInfo, start: datetime, last: datetime, periods: int) -> list[Bucket]:
    """What to read, as bucket-aligned spans, merged where they meet: [start, last), and for each of
    the `periods` baseline periods the same span that many periods back (a bucket's baseline lies
    within a bucket's length of its instant k * PERIOD earlier, DST changes included). A rule
    evaluated over more than a period reads one span; one evaluated bucket by bucket, a few small ones."""
    spans = [Bucket(start, last)]
    margin = LONGEST[rule.granularity]
    for k in range(1, periods + 1):
        back = k * PERIOD
        spans.append(
            Bucket(
                bucket_containing(rule.granularity, tz, start - back - margin).start,
                bucket_containing(rule.granularity, tz, last - back + margin).end,
            )
        )
    merged: list[Bucket] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Bucket(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def read(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, buckets: Sequence[Bucket]
) -> list[Reading]:
    """Each bucket's reading: its value and count, and what its condition compares it with.

    The series is read over the buckets (and the bucket before them, for a change) and, for an
    anomaly, the same buckets `baseline_periods` periods back, merged into as few reads as meet; a
    baseline is found by its bucket's local name (periods.wall_key) moved back 7 days a period, where
    periods.baseline_start places it.
    """
    first, last = buckets[0].start, buckets[-1].end
    condition = rule.condition
    periods = condition.baseline_periods if isinstance(condition, Anomaly) else 0
    start = previous_start(rule.granularity, tz, first) if isinstance(condition, Change) else first
    series = [
        point
        for window in _windows(rule, tz, start, last, periods)
        for point in read_points(session, org_id, rule, tz, window.start, window.end)
    ]
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
