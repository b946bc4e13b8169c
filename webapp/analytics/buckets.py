"""Bucket boundaries in an IANA time zone, computed in Python so that SQL only has to binary-search them."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.core.timeutil import local_midnight
from webapp.core.vocabulary import GRANULARITIES

MAX_BUCKETS = 10_000
# Months each calendar period spans (weeks and days are counted in days instead).
_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}
_HOUR = timedelta(hours=1)


class BucketError(ValueError):
    """A granularity or range the bucketing cannot serve; the message says what is allowed, and
    `details` the numbers behind it (a range with too many buckets: about how many, and the limit)."""

    def __init__(self, message: str, details: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


# A bucket's usual length, for saying about how many buckets an over-long range holds.
_NOMINAL = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30.436875),
    "quarterly": timedelta(days=91.310625),
    "yearly": timedelta(days=365.2425),
}


def too_many_buckets(granularity: str, start: datetime, end: datetime, max_buckets: int) -> BucketError:
    """The error of a range holding more than `max_buckets` buckets, naming about how many it holds."""
    about = math.ceil((end - start) / _NOMINAL[granularity])
    return BucketError(
        f"the range holds about {about:,} {granularity} buckets, more than the limit of {max_buckets:,}; "
        "narrow the range or use a coarser granularity",
        {"estimate": about, "limit": max_buckets},
    )


@dataclass(frozen=True)
class Buckets:
    """The bucket starts of a range, plus the range end, as UTC instants in ascending order.

    `bounds[i]` is where bucket i (0-based) starts; `bounds[-1]` is the range end, so bucket i
    covers [bounds[i], bounds[i + 1]). The first start may precede the range start: the first
    bucket is the whole bucket that contains it.
    """

    granularity: str
    tz: ZoneInfo
    bounds: tuple[datetime, ...]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @property
    def starts(self) -> tuple[datetime, ...]:
        return self.bounds[:-1]

    def label(self, index: int) -> str:
        """Bucket `index`'s start as ISO 8601 with the zone's offset at that instant."""
        return self.labels[index]

    @functools.cached_property
    def labels(self) -> tuple[str, ...]:
        """Every bucket's label (made once: make_buckets keeps recent Buckets for later requests)."""
        return tuple(start.astimezone(self.tz).isoformat() for start in self.starts)

    def index_of(self, moment: datetime) -> int | None:
        """The bucket holding `moment`, or None outside the range (a reference for tests)."""
        if moment < self.bounds[0] or moment >= self.bounds[-1]:
            return None
        low, high = 0, len(self.bounds) - 1
        while high - low > 1:
            middle = (low + high) // 2
            if self.bounds[middle] <= moment:
                low = middle
            else:
                high = middle
        return low


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise BucketError(f"unknown granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)}")


def _on_the_hour(moment: datetime, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    return local.minute == 0 and local.second == 0 and local.microsecond == 0


def _whole_hours_near(moment: datetime, tz: ZoneInfo, before: int, after: int) -> Iterator[datetime]:
    """The instants at which the local clock reads a whole hour from `before` hours before the local
    hour holding `moment` to `after` hours after it: each wall time read with both folds, kept where
    it reads back as itself (a skipped one does not). Exact for offsets with seconds (Africa/Monrovia's
    -0:44:30, the local mean times of old), which no walk over whole UTC minutes ever meets."""
    wall = moment.astimezone(tz).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    for hours in range(-before, after + 1):
        hour = wall + timedelta(hours=hours)
        for fold in (0, 1):
            instant = hour.replace(tzinfo=tz, fold=fold).astimezone(UTC)
            if instant.astimezone(tz).replace(tzinfo=None) == hour:
                yield instant


def _on_the_hour_before(moment: datetime, tz: ZoneInfo) -> datetime:
    """The last instant at or before `moment` where the local clock reads hh:00:00."""
    local = moment.astimezone(tz)
    candidate = moment - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    if candidate.astimezone(tz).utcoffset() == local.utcoffset():
        return candidate.astimezone(UTC)
    # An offset change inside this hour (zones that shift by 30 or 45 minutes, or by seconds).
    return max(t for t in _whole_hours_near(moment, tz, before=4, after=2) if t <= moment)


def _on_the_hour_after(moment: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after `moment` where the local clock reads hh:00:00 (at most one real hour on)."""
    local = moment.astimezone(tz)
    if local.minute == local.second == local.microsecond == 0:
        # On the hour, and the offset the same an hour on (every hour but a transition's): one hour on.
        candidate = moment + _HOUR
        if candidate.astimezone(tz).utcoffset() == local.utcoffset():
            return candidate
    step = _HOUR - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    candidate = (moment + step).astimezone(UTC)
    if candidate.astimezone(tz).utcoffset() == local.utcoffset() and _on_the_hour(candidate, tz):
        return candidate
    # The offset changed before the candidate (by part of an hour, or by seconds), or the clock
    # skipped whole days (Pacific/Apia's 2011-12-30, Pacific/Kiritimati's 1994-12-31): then the next
    # whole hour it reads is a day or more of wall hours on.
    for after in (4, 52):
        later = [t for t in _whole_hours_near(moment, tz, before=2, after=after) if t > moment]
        if later:
            return min(later)
    raise BucketError(f"no whole local hour of {tz.key} follows {moment.isoformat()} within two days")


def _skipped_hour_start(after: datetime, until: datetime, tz: ZoneInfo) -> datetime | None:
    """The instant in (after, until] where the clock springs forward from a whole hour to a time that
    is not one (Australia/Lord_Howe: 02:00 to 02:30), or None.

    The rest of that local hour (02:30 to 03:00) is a bucket of its own, starting at the change: the
    hour 02:00, which the clock never reads, stands for the instant it would have, as PostgreSQL's
    date_trunc and Python's zoneinfo (fold=0) read it. Hence the contract's "90 or 30 real minutes".
    """
    before, later = after.astimezone(tz).utcoffset(), until.astimezone(tz).utcoffset()
    if before is None or later is None or later <= before:
        return None
    # The first whole second holding the later offset (changes fall on whole seconds).
    lo, hi = math.floor(after.timestamp()), math.ceil(until.timestamp())
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == later:
            hi = middle
        else:
            lo = middle
    change = datetime.fromtimestamp(hi, UTC)
    wall_before = (change + before).replace(tzinfo=None)
    if not (after < change <= until) or _on_the_hour(change, tz):
        return None
    if wall_before.minute or wall_before.second:
        return None
    return change


def _hour_floor(moment: datetime, tz: ZoneInfo) -> datetime:
    """The start of the hourly bucket holding `moment`: the last instant at or before it where the
    local clock reads hh:00:00, or a spring-forward change after that instant (_skipped_hour_start)."""
    floor = _on_the_hour_before(moment, tz)
    return _skipped_hour_start(floor, moment, tz) or floor


def _next_hour(moment: datetime, tz: ZoneInfo) -> datetime:
    """The start of the hourly bucket after the one starting at `moment`: the first instant after it
    where the local clock reads hh:00:00, or a spring-forward change before that (_skipped_hour_start)."""
    following = _on_the_hour_after(moment, tz)
    skipped = _skipped_hour_start(moment, following, tz)
    return skipped if skipped is not None and skipped < following else following


def period_start(granularity: str, day: date) -> date:
    """The first local date of the day/week/month/quarter/year period that contains `day`."""
    _check_granularity(granularity)
    if granularity == "daily":
        return day
    if granularity == "weekly":
        return day - timedelta(days=day.weekday())
    if granularity == "monthly":
        return day.replace(day=1)
    if granularity == "quarterly":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    if granularity == "yearly":
        return date(day.year, 1, 1)
    raise BucketError(f"{granularity} periods are not calendar dates")


def next_period(granularity: str, start: date) -> date:
    """The first local date of the period after the one starting at `start`."""
    if granularity == "daily":
        return start + timedelta(days=1)
    if granularity == "weekly":
        return start + timedelta(days=7)
    months = start.month - 1 + _MONTHS[granularity]
    return date(start.year + months // 12, months % 12 + 1, 1)


def _starts(granularity: str, start: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    if granularity == "hourly":
        moment = _hour_floor(start, tz)
        while True:
            yield moment
            moment = _next_hour(moment, tz)
    day = period_start(granularity, start.astimezone(tz).date())
    while True:
        yield local_midnight(day, tz).astimezone(UTC)
        day = next_period(granularity, day)


# The shortest a bucket of each granularity can be (a DST day of 23 hours, February, ...).
_SHORTEST = {
    "hourly": timedelta(minutes=30),
    "daily": timedelta(hours=23),
    "weekly": timedelta(days=7, hours=-1),
    "monthly": timedelta(days=28, hours=-1),
    "quarterly": timedelta(days=89, hours=-1),
    "yearly": timedelta(days=365, hours=-1),
}


# The longest a bucket of each granularity can be: an hour is at most 90 real minutes (Lord Howe's
# fall-back), given room; a local day a zone skipped whole (Pacific/Apia's 2011-12-30) joins its
# neighbour, and a change of the zone's offset can add up to a day more.
_LONGEST = {
    "hourly": timedelta(hours=3),
    "daily": timedelta(days=3),
    "weekly": timedelta(days=9),
    "monthly": timedelta(days=33),
    "quarterly": timedelta(days=94),
    "yearly": timedelta(days=368),
}


def check_bucket_count(
    granularity: str, start: datetime, end: datetime, tz: ZoneInfo, *, max_buckets: int = MAX_BUCKETS
) -> None:
    """BucketError when [start, end) holds more than `max_buckets` buckets; cheap for every range.

    Bounds from the shortest and the longest possible bucket settle almost every request without
    building the boundaries (a range far past the limit is refused at once: building its first
    10,000 bounds cost a refusal 30 to 110 ms); only a range near the limit is counted exactly.
    """
    _check_granularity(granularity)
    if start >= end:
        raise BucketError("start must be before end")
    span = end - start
    if span / _LONGEST[granularity] - 1 > max_buckets:
        raise too_many_buckets(granularity, start, end, max_buckets)
    if span / _SHORTEST[granularity] + 2 > max_buckets:
        make_buckets(granularity, start, end, tz, max_buckets=max_buckets)


# A request builds the same buckets more than once (an aggregation's cost estimate, then its read),
# and a 90-day hourly range is 2,161 zone conversions. Few entries: one can hold 10,000 bounds.
@functools.lru_cache(maxsize=8)
def make_buckets(
    granularity: str, start: datetime, end: datetime, tz: ZoneInfo, *, max_buckets: int = MAX_BUCKETS
) -> Buckets:
    """The buckets of [start, end) at `granularity` aligned in `tz`; BucketError beyond `max_buckets`."""
    _check_granularity(granularity)
    if start.tzinfo is None or end.tzinfo is None:
        raise BucketError("start and end must be aware datetimes")
    if start >= end:
        raise BucketError("start must be before end")
    bounds: list[datetime] = []
    try:
        for moment in _starts(granularity, start, tz):
            if moment >= end:
                break
            if bounds and moment <= bounds[-1]:
                # A local date the clock skipped (Pacific/Apia's 2011-12-30) begins where the next
                # one does: no bucket of no time.
                continue
            if len(bounds) == max_buckets:
                raise too_many_buckets(granularity, start, end, max_buckets)
            bounds.append(moment)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, BucketError):
            raise
        # Dates past year 9999 cannot be represented; such a range is a client mistake.
        raise BucketError("the range reaches beyond the supported years 1..9999") from exc
    bounds.append(end.astimezone(UTC))
    return Buckets(granularity, tz, tuple(bounds))


DEFAULT_RANGE_DAYS = 30


def shift_days(moment: datetime, days: int, tz: ZoneInfo) -> datetime:
    """The same local wall-clock time `days` calendar days away (a skipped time moves forward)."""
    wall = moment.astimezone(tz).replace(tzinfo=None) + timedelta(days=days)
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def previous_period_start(start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
    """Where the period before [start, end) starts: as many local days earlier when the range is whole
    local days (midnight to midnight, as a 23- or 25-hour day still is one day), else as long before."""
    first_day, last_day = _midnight_date(start, tz), _midnight_date(end, tz)
    if first_day is not None and last_day is not None:
        return local_midnight(first_day - timedelta(days=(last_day - first_day).days), tz)
    # In UTC: Python subtracts two times of one zone object as wall-clock times.
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    return (first - (last - first)).astimezone(tz)


def _midnight_date(moment: datetime, tz: ZoneInfo) -> date | None:
    """The local date `moment` begins, if it is that date's first instant in `tz` (compared in UTC)."""
    day = moment.astimezone(tz).date()
    return day if local_midnight(day, tz).astimezone(UTC) == moment.astimezone(UTC) else None


def default_end(now: datetime, tz: ZoneInfo) -> datetime:
    """The end of today in `tz`: ranges ending now cover today and stay the same all day (cacheable)."""
    return local_midnight(now.astimezone(tz).date() + timedelta(days=1), tz)


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    tz: ZoneInfo,
    now: datetime,
    *,
    days: int = DEFAULT_RANGE_DAYS,
) -> tuple[datetime, datetime]:
    """[start, end): a missing end is the end of today, a missing start `days` local days before end."""
    end = end if end is not None else default_end(now, tz)
    start = start if start is not None else shift_days(end, -days, tz)
    if start >= end:
        raise BucketError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    return start, end
