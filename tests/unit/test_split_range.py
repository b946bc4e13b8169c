"""Which parts of a range rollups answer: checked hour by hour against the rule, not the code."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.analytics.buckets import make_buckets
from webapp.analytics.coverage import split_range

HOUR = timedelta(hours=1)
ZONES = ("Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns", "UTC")


def _hours_by_rule(bounds, start, end, now) -> set[datetime]:
    """Every closed UTC hour inside [start, end) that lies wholly inside one bucket."""
    closed = now.replace(minute=0, second=0, microsecond=0)
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = set()
    while hour < end:
        inside_range = start <= hour and hour + HOUR <= end and hour + HOUR <= closed
        one_bucket = not any(hour < b < hour + HOUR for b in bounds)
        within = bounds[0] <= hour and hour + HOUR <= bounds[-1]
        if inside_range and one_bucket and within:
            out.add(hour)
        hour += HOUR
    return out


def _covered_hours(pieces) -> set[datetime]:
    out = set()
    for lo, hi in pieces:
        assert lo.minute == lo.second == lo.microsecond == 0
        assert hi.minute == hi.second == 0
        moment = lo
        while moment < hi:
            out.add(moment)
            moment += HOUR
    return out


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("granularity", ["hourly", "daily"])
def test_pieces_cover_the_range_once_and_rollups_take_every_whole_hour(zone, granularity):
    rng = random.Random(f"{zone}{granularity}")
    tz = ZoneInfo(zone)
    for _ in range(20):
        start = datetime(2026, 3, 20, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(0, 60 * 24 * 20), microseconds=rng.randrange(0, 10**6)
        )
        end = start + timedelta(minutes=rng.randrange(1, 60 * 24 * 12), microseconds=rng.randrange(0, 10**6))
        now = start + (end - start) * rng.uniform(0.3, 1.2)
        buckets = make_buckets(granularity, start, end, tz)
        covered, uncovered = split_range(buckets.bounds, start, end, now)

        pieces = sorted(covered + uncovered)
        assert pieces[0][0] == max(start, buckets.bounds[0])
        assert pieces[-1][1] == min(end, buckets.bounds[-1])
        for (_, hi), (lo, _) in itertools.pairwise(pieces):
            assert hi == lo  # no gap, no overlap
        assert _covered_hours(covered) == _hours_by_rule(buckets.bounds, start, end, now)
        for pieces_of_a_kind in (covered, uncovered):  # adjacent pieces are merged
            for (_, hi), (lo, _) in itertools.pairwise(pieces_of_a_kind):
                assert hi < lo
