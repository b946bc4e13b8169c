"""The buckets a rule is evaluated on, in the organization's zone, and where their baselines lie.

Buckets are those of the analytics (analytics.buckets): local hours (the repeated autumn hour is two
buckets, a Lord Howe hour across its change 30 or 90 minutes), local days (23 or 25 hours at DST
changes) and weeks from Monday. The baseline of a bucket `k` periods back is the same local bucket
7k days earlier: the same hour of the same weekday, the same weekday, or the week k weeks before.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.analytics.buckets import make_buckets
from webapp.core.timeutil import local_midnight

# The longest a bucket can last: Lord Howe's 90-minute hour, a 25-hour day, a week with an extra hour.
LONGEST = {
    "hourly": timedelta(minutes=90),
    "daily": timedelta(hours=25),
    "weekly": timedelta(days=7, hours=1),
}
# The shortest: a rule whose evaluated_until is not this far behind has no closed bucket to evaluate.
SHORTEST = {
    "hourly": timedelta(minutes=30),
    "daily": timedelta(hours=23),
    "weekly": timedelta(days=7, hours=-1),
}
_DAYS_PER_PERIOD = 7
# How far back one baseline period lies: 7 days (the same hour of the week, the same weekday, the
# week before).
PERIOD = timedelta(days=_DAYS_PER_PERIOD)


@dataclass(frozen=True)
class Bucket:
    """[start, end) as UTC instants."""

    start: datetime
    end: datetime


def bucket_containing(granularity: str, tz: ZoneInfo, moment: datetime) -> Bucket:
    """The bucket of `granularity` in `tz` that holds `moment`."""
    bounds = make_buckets(granularity, moment, moment + LONGEST[granularity], tz).bounds
    return Bucket(bounds[0], bounds[1])


def closed_buckets(
    granularity: str, tz: ZoneInfo, *, since: datetime, until: datetime, limit: int
) -> list[Bucket]:
    """The buckets that start at or after `since` and end by `until`, oldest first, at most `limit`."""
    if since >= until:
        return []
    # Past `limit` buckets the rest is the next pass's: the range read is bounded whatever the gap.
    horizon = min(until, since + limit * LONGEST[granularity])
    bounds = make_buckets(granularity, since, horizon + LONGEST[granularity], tz).bounds
    out: list[Bucket] = []
    # The last bound is the range's end, not a bucket's: the pairs before it are whole buckets.
    for start, end in itertools.pairwise(bounds[:-1]):
        if end > until or len(out) == limit:
            break
        if start >= since:
            out.append(Bucket(start, end))
    return out


def previous_start(granularity: str, tz: ZoneInfo, start: datetime) -> datetime:
    """Where the bucket before the one starting at `start` starts."""
    return bucket_containing(granularity, tz, start - timedelta(microseconds=1)).start


def baseline_start(granularity: str, tz: ZoneInfo, start: datetime, periods_back: int) -> datetime | None:
    """The start of the same bucket `periods_back` periods before the one starting at `start`, or None
    when that local hour did not exist (it fell in a spring gap) or that date was skipped."""
    days = timedelta(days=_DAYS_PER_PERIOD * periods_back)
    local = start.astimezone(tz)
    if granularity != "hourly":
        day = local.date() - days
        begins = local_midnight(day, tz)
        # A date the zone skipped whole (Pacific/Apia's 2011-12-30) has no bucket: no baseline.
        return begins.astimezone(UTC) if begins.date() == day else None
    wall = local.replace(tzinfo=None) - days
    # A repeated autumn hour is taken at its first occurrence (fold=0), as every local time here is.
    moment = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return moment


def wall_key(granularity: str, local_start: datetime) -> datetime | date:
    """A bucket's name on the local clock, given its local start: the wall-clock hour (naive) of an
    hourly bucket, the local date of a day's or week's. The bucket `k` periods back is the one named
    this minus k * PERIOD; a name no bucket has (an hour in a spring gap) has no baseline, as
    baseline_start says."""
    if granularity == "hourly":
        return local_start.replace(tzinfo=None, fold=0)
    return local_start.date()
