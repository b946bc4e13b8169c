"""A rule's buckets read from the database through the analytics' own time series, never the cache:
a stale cached answer must not keep an alert firing (nor keep one quiet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from webapp.alerts.conditions import Anomaly, Change, Condition, Reading
from webapp.alerts.periods import Bucket, baseline_start, bucket_containing, previous_start
from webapp.analytics.metric_reads import TimeSeriesRead
from webapp.analytics.window import Window
from webapp.core.filters import Filters


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
) -> dict[datetime, Point]:
    """The rule's metric in each bucket of [start, end) (bucket-aligned), by bucket start (UTC)."""
    window = Window(start, end, tz, rule.granularity)
    answer = TimeSeriesRead(rule.metric, window, rule.filters).compute(session, org_id)
    return {
        datetime.fromisoformat(point["bucket"]).astimezone(UTC): Point(point["value"], int(point["count"]))
        for point in answer["points"]
    }


def read(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, buckets: Sequence[Bucket]
) -> list[Reading]:
    """Each bucket's reading: its value and count, and what its condition compares it with.

    One read covers the buckets (and the bucket before them, for a change); an anomaly adds one read
    per baseline period, of the same buckets that many periods back.
    """
    first, last = buckets[0].start, buckets[-1].end
    condition = rule.condition
    start = previous_start(rule.granularity, tz, first) if isinstance(condition, Change) else first
    current = read_points(session, org_id, rule, tz, start, last)
    earlier: list[dict[datetime, Point]] = []
    if isinstance(condition, Anomaly):
        earlier = [
            _period_back(session, org_id, rule, tz, buckets, k)
            for k in range(1, condition.baseline_periods + 1)
        ]
    readings = []
    previous = current.get(start) if start != first else None
    for bucket in buckets:
        point = current[bucket.start]
        baseline = tuple(
            value
            for k, points in enumerate(earlier, start=1)
            if (value := _value_at(points, baseline_start(rule.granularity, tz, bucket.start, k))) is not None
        )
        readings.append(
            Reading(point.value, point.count, previous.value if previous is not None else None, baseline)
        )
        previous = point
    return readings


def _period_back(
    session: Session, org_id: int, rule: Definition, tz: ZoneInfo, buckets: Sequence[Bucket], k: int
) -> dict[datetime, Point]:
    """The points of the buckets `k` periods before `buckets` (the same local buckets, whatever DST did)."""
    starts = [s for s in (baseline_start(rule.granularity, tz, b.start, k) for b in buckets) if s is not None]
    if not starts:
        return {}
    end = bucket_containing(rule.granularity, tz, starts[-1]).end
    return read_points(session, org_id, rule, tz, starts[0], end)


def _value_at(points: dict[datetime, Point], start: datetime | None) -> float | None:
    if start is None:
        return None
    point = points.get(start)
    return point.value if point is not None else None
