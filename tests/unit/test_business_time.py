"""Business time against a slow, separately written computation: minute by minute with zoneinfo.

The reference below knows nothing of spans, prefix sums or offsets tables: it asks, for each minute,
whether any interval of the local dates around it contains it, each interval's edges converted by
zoneinfo with fold=0. With whole-minute offsets (every zone here since 1950) every edge falls on a
UTC minute, so openness is constant within each minute and the walk is exact.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from webapp.clocks.business_time import (
    Interval,
    Timeline,
    WeeklySchedule,
    build,
    from_us,
    to_us,
)

ZONES = ("America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", "America/Santiago")
H = 3600


def _weekdays(start: int, end: int, days: range = range(5)) -> tuple[Interval, ...]:
    return tuple(Interval(day, start, end) for day in days)


OFFICE = _weekdays(8 * H, 17 * H)
# Split shifts on weekdays; a night shift Friday 22:00 to Saturday 06:00 (ending at 24:00 and starting
# at 00:00); Saturday and Sunday intervals over the small hours, where the clocks change.
SHIFTS = (
    *_weekdays(8 * H, 12 * H),
    *_weekdays(13 * H, 17 * H + 30 * 60),
    Interval(4, 22 * H, 24 * H),
    Interval(5, 0, 6 * H),
    Interval(5, 23 * H, 24 * H),
    Interval(6, 0, 45 * 60),
    Interval(6, 1 * H + 15 * 60, 2 * H + 15 * 60),
    Interval(6, 2 * H + 30 * 60, 4 * H),
    Interval(6, 22 * H, 24 * H),
)
# Holidays on change days of these zones (2026 and 2031) and a few ordinary ones.
HOLIDAYS = frozenset(
    {
        date(2026, 3, 8),
        date(2026, 10, 25),
        date(2026, 4, 5),
        date(2026, 9, 6),
        date(2026, 12, 25),
        date(2027, 1, 1),
        date(2031, 3, 30),
        date(2031, 11, 2),
        date(2031, 10, 5),
    }
)


class Reference:
    """Open or closed, one instant at a time, straight from the definition."""

    def __init__(self, schedule: WeeklySchedule) -> None:
        self.tz = ZoneInfo(schedule.timezone)
        self.schedule = schedule

    @cache  # noqa: B019 (a handful of short-lived instances)
    def spans_of(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.schedule.holidays:
            return []
        out = []
        for interval in self.schedule.intervals:
            if interval.day == day.weekday():
                out.append((self.wall(day, interval.start), self.wall(day, interval.end)))
        return out

    def wall(self, day: date, seconds: int) -> datetime:
        naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
        return naive.replace(tzinfo=self.tz, fold=0).astimezone(UTC)

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz).date()
        return any(
            start <= instant < end
            for day in (local - timedelta(days=1), local, local + timedelta(days=1))
            for start, end in self.spans_of(day)
        )

    def open_seconds(self, a: datetime, b: datetime) -> float:
        """Open time in [a, b), minute by minute (a partial first and last minute by their start)."""
        total = 0.0
        t = a
        while t < b:
            step_end = min(b, (t + timedelta(minutes=1)).replace(second=0, microsecond=0))
            if self.is_open(t):
                total += (step_end - t).total_seconds()
            t = step_end
        return total


def _change_days(tz: ZoneInfo, year: int) -> list[date]:
    days = []
    day = date(year, 1, 1)
    while day.year == year:
        noon = datetime.combine(day, time(12), tzinfo=tz)
        if noon.utcoffset() != (noon - timedelta(days=1)).utcoffset():
            days.append(day - timedelta(days=1))
        day += timedelta(days=1)
    return days


def _instant(rng: random.Random, tz: ZoneInfo) -> datetime:
    if rng.random() < 0.6:
        year = rng.choice((2026, 2031, rng.randint(1950, 2150)))
        changes = _change_days(tz, year) or [date(year, 6, 1)]
        around = datetime.combine(rng.choice(changes), time(), tzinfo=UTC)
        moment = around + timedelta(seconds=rng.randint(-2 * 86400, 3 * 86400))
    else:
        moment = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 200 * 365 * 86400))
    if rng.random() < 0.3:
        moment += timedelta(microseconds=rng.randint(0, 999_999))
    return moment


@pytest.mark.parametrize("intervals", [OFFICE, SHIFTS], ids=["office", "shifts"])
@pytest.mark.parametrize("zone_name", ZONES)
def test_random_pairs_match_the_minute_walk(zone_name: str, intervals: tuple[Interval, ...]) -> None:
    schedule = WeeklySchedule(zone_name, intervals, HOLIDAYS)
    timeline = build(schedule)
    reference = Reference(schedule)
    rng = random.Random(f"{zone_name}-{len(intervals)}")
    tz = ZoneInfo(zone_name)
    for _ in range(25):
        a = _instant(rng, tz)
        b = a + timedelta(seconds=rng.randint(0, 3 * 86400), microseconds=rng.randint(0, 999_999))
        assert timeline.seconds_between(a, b) == pytest.approx(reference.open_seconds(a, b), abs=1e-6), (
            a,
            b,
        )


@pytest.mark.parametrize("zone_name", ZONES)
def test_the_clock_passes_a_target_where_the_walk_reaches_it(zone_name: str) -> None:
    """passes(a, x) is the first instant at which exactly x open seconds have run since a: the
    clock was running just before it (a span's end when x runs out at closing time)."""
    schedule = WeeklySchedule(zone_name, SHIFTS, HOLIDAYS)
    timeline = build(schedule)
    reference = Reference(schedule)
    rng = random.Random(zone_name)
    for _ in range(25):
        a = _instant(rng, ZoneInfo(zone_name))
        target = rng.choice((0, 60, 5 * 60, H, 4 * H, 9 * H, 20 * H)) + rng.randint(0, 59)
        at = timeline.passes(a, target)
        assert at is not None
        assert reference.open_seconds(a, at) == pytest.approx(target, abs=1e-6), (a, target, at)
        if target:
            just_before = at - timedelta(microseconds=1)
            assert reference.is_open(just_before), (a, target, at)
            assert reference.open_seconds(a, just_before) < target, (a, target, at)
        else:
            assert at == a


def test_friday_evening_to_monday_morning_is_ten_minutes() -> None:
    tz = ZoneInfo("America/New_York")
    timeline = build(WeeklySchedule("America/New_York", OFFICE))
    friday = datetime(2026, 3, 6, 16, 55, tzinfo=tz)
    monday = datetime(2026, 3, 9, 8, 5, tzinfo=tz)
    assert timeline.seconds_between(friday, monday) == 600
    # Five minutes are left on Friday; the sixth runs from 08:00 Monday (after the spring change).
    assert timeline.passes(friday, 6 * 60) == datetime(2026, 3, 9, 8, 1, tzinfo=tz)


def test_a_target_used_up_at_closing_time_is_reached_at_closing_time() -> None:
    tz = ZoneInfo("Europe/Berlin")
    timeline = build(WeeklySchedule("Europe/Berlin", OFFICE))
    friday = datetime(2026, 5, 15, 16, 0, tzinfo=tz)
    # One open hour is left at 16:00: the clock reaches it at 17:00, not when the office opens again.
    assert timeline.passes(friday, H) == datetime(2026, 5, 15, 17, 0, tzinfo=tz)
    assert timeline.passes(friday, H - 1) == datetime(2026, 5, 15, 16, 59, 59, tzinfo=tz)
    assert timeline.passes(friday, H + 1) == datetime(2026, 5, 18, 8, 0, 1, tzinfo=tz)
    # From closing time on, the next open second is Monday's first.
    evening = datetime(2026, 5, 15, 20, 0, tzinfo=tz)
    assert timeline.passes(evening, 0) == evening
    assert timeline.passes(evening, 1) == datetime(2026, 5, 18, 8, 0, 1, tzinfo=tz)


def test_change_days_give_intervals_their_real_length() -> None:
    tz = ZoneInfo("America/New_York")
    night = WeeklySchedule("America/New_York", (Interval(6, 0, 6 * H),))
    timeline = build(night)
    spring = datetime(2026, 3, 8, tzinfo=tz)
    autumn = datetime(2026, 11, 1, tzinfo=tz)
    assert timeline.seconds_between(spring, spring + timedelta(days=1)) == 5 * H
    assert timeline.seconds_between(autumn, autumn + timedelta(days=1)) == 7 * H
    # Lord Howe moves by half an hour.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    timeline = build(WeeklySchedule("Australia/Lord_Howe", (Interval(6, 0, 6 * H),)))
    start = datetime(2026, 10, 4, tzinfo=lord_howe)
    assert timeline.seconds_between(start, start + timedelta(days=1)) == 5.5 * H


def test_a_wall_clock_edge_in_the_spring_gap_takes_the_offset_before_the_change() -> None:
    tz = ZoneInfo("America/New_York")
    # 02:30 does not exist on 8 March 2026; fold=0 reads it with EST, which is 03:30 EDT.
    timeline = build(WeeklySchedule("America/New_York", (Interval(6, 2 * H + 30 * 60, 5 * H),)))
    day = datetime(2026, 3, 8, tzinfo=tz)
    assert timeline.seconds_between(day, day + timedelta(days=1)) == 1.5 * H
    assert timeline.passes(day, 1) == datetime(2026, 3, 8, 3, 30, 1, tzinfo=tz)


def test_a_holiday_closes_its_whole_local_date_and_no_other() -> None:
    tz = ZoneInfo("Asia/Kolkata")
    night = (Interval(0, 22 * H, 24 * H), Interval(1, 0, 6 * H))
    open_week = build(WeeklySchedule("Asia/Kolkata", night))
    closed_tuesday = build(WeeklySchedule("Asia/Kolkata", night, frozenset({date(2026, 12, 1)})))
    monday = datetime(2026, 11, 30, 12, tzinfo=tz)
    wednesday = monday + timedelta(days=2)
    assert open_week.seconds_between(monday, wednesday) == 8 * H
    assert closed_tuesday.seconds_between(monday, wednesday) == 2 * H


def test_overnight_intervals_merge_into_one_span() -> None:
    timeline = build(WeeklySchedule("UTC", (Interval(4, 22 * H, 24 * H), Interval(5, 0, 6 * H))))
    friday = datetime(2026, 6, 5, 22, tzinfo=UTC)
    index = int((timeline.starts == to_us(friday)).nonzero()[0][0])
    assert from_us(int(timeline.ends[index])) == friday + timedelta(hours=8)


def test_seconds_offsets_of_the_early_century_are_exact() -> None:
    """Amsterdam kept +00:19:32 until 1937: edges fall on odd seconds, so walk second by second."""
    schedule = WeeklySchedule("Europe/Amsterdam", OFFICE)
    timeline = build(schedule)
    reference = Reference(schedule)
    tz = ZoneInfo("Europe/Amsterdam")
    for start in (datetime(1930, 6, 2, 7, 50, tzinfo=tz), datetime(1930, 6, 6, 16, 50, tzinfo=tz)):
        end = start + timedelta(minutes=20)
        walked = sum(reference.is_open(start + timedelta(seconds=s)) for s in range(20 * 60))
        assert timeline.seconds_between(start, end) == walked
        assert walked not in (0, 20 * 60)


def test_vectorised_answers_equal_the_scalar_ones() -> None:
    timeline = build(WeeklySchedule("Europe/Berlin", SHIFTS, HOLIDAYS))
    rng = random.Random(7)
    starts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8)) for _ in range(200)]
    ends = [s + timedelta(seconds=rng.randint(0, 10**6)) for s in starts]
    vector = timeline.between(np.array([to_us(s) for s in starts]), np.array([to_us(e) for e in ends]))
    assert [v / 1e6 for v in vector.tolist()] == [
        timeline.seconds_between(s, e) for s, e in zip(starts, ends, strict=True)
    ]


def test_an_empty_schedule_never_opens() -> None:
    timeline = build(WeeklySchedule("UTC", ()))
    assert isinstance(timeline, Timeline)
    assert timeline.seconds_between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == 0
    assert timeline.passes(datetime(2026, 1, 1, tzinfo=UTC), 1) is None
