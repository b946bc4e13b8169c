"""Business time: a weekly schedule's open spans as UTC instants, and the open time between instants.

A schedule (an IANA zone, weekly wall-clock intervals, holidays) becomes its open spans over the
platform's years as three numpy arrays: span starts, span ends (UTC microseconds since the Unix
epoch) and the open microseconds before each span. The open time before an instant, C(t), is then
one binary search; the business time between a and b is C(b) - C(a); and the instant at which a
clock running from a reaches x open seconds is the inverse, one binary search too. Pure: no
database, no Flask.

Edges follow `zoneinfo` with fold=0: a wall-clock time in a spring gap takes the offset before the
change, a repeated autumn time is its first occurrence. "24:00" is the next local midnight. A holiday
closes its whole local date. The open time is the union of the spans (fold=0 may make two intervals
of a change day overlap in real time), so overlapping or touching spans are merged.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from webapp.core.timeutil import zone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 86_400
US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Local dates whose intervals can reach an instant of the years 1900 to 2199 in any zone.
FIRST_DAY = date(1899, 12, 31)
LAST_DAY = date(2200, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Timelines kept per process, by total size: a 5-day schedule over 300 years is about 1.9 MB.
CACHE_MAX_BYTES = 64 * 1024 * 1024
# What Timeline.reach answers for open time the schedule never accumulates before 2200.
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Interval:
    """Open from `start` to `end` seconds after local midnight of every `day` (0 = Monday)."""

    day: int
    start: int
    end: int


@dataclass(frozen=True)
class WeeklySchedule:
    """What business time is computed from: a zone, weekly intervals and closed local dates."""

    timezone: str
    intervals: tuple[Interval, ...]
    holidays: frozenset[date] = frozenset()


def to_us(instant: datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch."""
    return (instant - EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    """Microseconds since the Unix epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=int(micros))


class Timeline:
    """The open spans of one schedule, sorted and disjoint, with the open time before each."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts = starts
        self.ends = ends
        self.lengths = ends - starts
        self.before = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)
        self.total = int(self.lengths.sum())

    @property
    def nbytes(self) -> int:
        """Memory the arrays hold (what the process cache counts)."""
        return self.starts.nbytes + self.ends.nbytes + self.lengths.nbytes + self.before.nbytes

    def open_before(self, instants: np.ndarray | int) -> np.ndarray:
        """C(t): open microseconds before each instant (microseconds since the epoch)."""
        t = np.asarray(instants, dtype=np.int64)
        if not len(self.starts):
            return np.zeros_like(t)
        # The span starting last at or before t; before the first span (1899), the first one, whose
        # part before t is then clipped to nothing.
        k = np.maximum(np.searchsorted(self.starts, t, side="right") - 1, 0)
        return self.before[k] + np.clip(t - self.starts[k], 0, self.lengths[k])

    def between(self, start: np.ndarray | int, end: np.ndarray | int) -> np.ndarray:
        """Open microseconds in [start, end) (negative when end is before start)."""
        return self.open_before(end) - self.open_before(start)

    def reach(self, open_us: np.ndarray | int, *, after: bool = False) -> np.ndarray:
        """The first instant at which C equals each value: where a clock running on reaches it.

        Reached inside a span, that is the instant of reaching; reached exactly at a span's end, that
        end (closing time: the clock has reached the value and stays there until the next span opens),
        or with `after` the next span's start (the first instant after which C is greater).
        NEVER where the value is beyond the whole open time of the platform's years.
        """
        x = np.asarray(open_us, dtype=np.int64)
        if not len(self.starts):
            return np.full_like(x, NEVER)
        k = np.maximum(np.searchsorted(self.before, x, side="right" if after else "left") - 1, 0)
        at = self.starts[k] + (x - self.before[k])
        return np.where(x > self.total, NEVER, at)

    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Business seconds between two aware datetimes."""
        return int(self.between(to_us(start), to_us(end))) / US

    def passes(self, start: datetime, seconds: float) -> datetime | None:
        """When a clock running from `start` reaches `seconds` of open time (None: not before 2200)."""
        begin = to_us(start)
        at = int(self.reach(int(self.open_before(begin)) + round(seconds * US)))
        return None if at == NEVER else from_us(max(at, begin))


def build(schedule: WeeklySchedule) -> Timeline:
    """The open spans of `schedule` over the local dates FIRST_DAY to LAST_DAY."""
    tz = zone(schedule.timezone)
    offsets = _midnight_offsets(tz.key)
    # Day i runs from midnight i to midnight i + 1: a different offset there means a change that day.
    changes = offsets[:-1] != offsets[1:]
    ordinals = np.arange(FIRST_DAY.toordinal(), LAST_DAY.toordinal() + 1, dtype=np.int64)
    open_days = ~np.isin(ordinals, [d.toordinal() for d in schedule.holidays])
    weekdays = (ordinals - 1) % 7  # ordinal 1, 0001-01-01, was a Monday
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for interval in schedule.intervals:
        days = np.flatnonzero((weekdays == interval.day) & open_days)
        starts.append(_edges(tz, offsets, changes, days, interval.start))
        ends.append(_edges(tz, offsets, changes, days, interval.end))
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return Timeline(empty, empty)
    return Timeline(*_union(np.concatenate(starts), np.concatenate(ends)))


def _edges(
    tz: ZoneInfo, offsets: np.ndarray, changes: np.ndarray, days: np.ndarray, seconds: int
) -> np.ndarray:
    """UTC microseconds of wall-clock `seconds` after local midnight of `days` (indexes from FIRST_DAY)."""
    if seconds == DAY_SECONDS:  # 24:00 is the next day's midnight
        days, seconds = days + 1, 0
    local = (days + (FIRST_DAY.toordinal() - _EPOCH_ORDINAL)) * DAY_SECONDS + seconds
    utc = local - offsets[days]
    if seconds:
        # A midnight's offset is exact; a later time of a day whose offset changes asks zoneinfo.
        first = FIRST_DAY.toordinal()
        for i in np.flatnonzero(changes[days]):
            wall = datetime.fromordinal(first + int(days[i])) + timedelta(seconds=seconds)
            utc[i] = local[i] - _seconds(tz.utcoffset(wall))
    return utc * US


def _union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted disjoint spans covering exactly the union of [start, end) pairs (empty pairs dropped)."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # A span opens a new group unless it starts at or before the furthest end so far.
    first = np.concatenate(([True], starts[1:] > reach[:-1]))
    heads = np.flatnonzero(first)
    lasts = np.concatenate((heads[1:] - 1, [len(starts) - 1]))
    return starts[heads], reach[lasts]


def _seconds(offset: timedelta | None) -> int:
    assert offset is not None
    return offset.days * DAY_SECONDS + offset.seconds


@functools.cache
def _midnights() -> tuple[datetime, ...]:
    """Naive local midnights from FIRST_DAY to the day after LAST_DAY, made once per process."""
    return tuple(datetime.fromordinal(o) for o in range(FIRST_DAY.toordinal(), LAST_DAY.toordinal() + 2))


@functools.lru_cache(maxsize=64)
def _midnight_offsets(zone_name: str) -> np.ndarray:
    """UTC offset (seconds, fold=0) at each local midnight of _midnights(), for one zone.

    Daily, because zones change at most once in any four days (the closest pair in tzdata 2026),
    so equal offsets at two consecutive midnights mean no change between them.
    """
    utcoffset = ZoneInfo(zone_name).utcoffset
    offsets = [utcoffset(midnight) for midnight in _midnights()]
    seconds = {offset: _seconds(offset) for offset in set(offsets)}
    return np.fromiter((seconds[o] for o in offsets), dtype=np.int64, count=len(offsets))


class TimelineCache:
    """Timelines by (schedule id, version), least recently used first out past `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, int], Timeline] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, schedule_id: int, version: int, schedule: WeeklySchedule) -> Timeline:
        """The timeline of this version of the schedule, built on first use."""
        key = (schedule_id, version)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        built = build(schedule)  # outside the lock: other schedules need not wait
        with self._lock:
            if key not in self._items:
                self._items[key] = built
                self._bytes += built.nbytes
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
        return built


timelines = TimelineCache()
