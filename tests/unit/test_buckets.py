"""Bucket boundaries across daylight-saving changes and offsets that are not whole hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.analytics.buckets import GRANULARITIES, BucketError, make_buckets, next_period, period_start

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)


def durations(buckets) -> list[timedelta]:
    return [b - a for a, b in zip(buckets.bounds, buckets.bounds[1:], strict=False)]


def test_hourly_spring_forward_new_york_skips_the_missing_hour():
    b = make_buckets("hourly", local(NY, 2026, 3, 8), local(NY, 2026, 3, 9), NY)
    assert len(b) == 23
    assert set(durations(b)) == {timedelta(hours=1)}
    labels = [b.label(i) for i in range(len(b))]
    assert labels[1] == "2026-03-08T01:00:00-05:00"
    assert labels[2] == "2026-03-08T03:00:00-04:00"


def test_hourly_fall_back_new_york_has_two_one_oclock_buckets():
    b = make_buckets("hourly", local(NY, 2026, 11, 1), local(NY, 2026, 11, 2), NY)
    assert len(b) == 25
    assert set(durations(b)) == {timedelta(hours=1)}
    labels = [b.label(i) for i in range(len(b))]
    assert labels[1:3] == ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00"]


def test_hourly_fall_back_berlin():
    b = make_buckets("hourly", local(BERLIN, 2026, 10, 25), local(BERLIN, 2026, 10, 26), BERLIN)
    assert len(b) == 25
    assert [b.label(i) for i in (2, 3)] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        (NY, date(2026, 3, 8), 23),
        (NY, date(2026, 11, 1), 25),
        (BERLIN, date(2026, 3, 29), 23),
        (BERLIN, date(2026, 10, 25), 25),
        (BERLIN, date(2026, 7, 1), 24),
    ],
)
def test_daily_buckets_are_local_days(tz, day, hours):
    start = local(tz, day.year, day.month, day.day)
    b = make_buckets("daily", start - timedelta(days=1), start + timedelta(days=2), tz)
    assert len(b) == 3
    assert durations(b)[1] == timedelta(hours=hours)
    assert b.label(1) == start.isoformat()


@pytest.mark.parametrize(("tz", "offset"), [(KOLKATA, "+05:30"), (KATHMANDU, "+05:45")])
def test_fractional_offsets_align_hours_and_days_to_local_clock(tz, offset):
    start = utc(2026, 1, 1, 0, 0)
    hourly = make_buckets("hourly", start, start + timedelta(hours=5), tz)
    for i in range(len(hourly)):
        assert hourly.label(i).endswith(f":00:00{offset}")
    assert hourly.bounds[0] < start < hourly.bounds[1]
    daily = make_buckets("daily", start, start + timedelta(days=3), tz)
    assert [daily.label(i) for i in range(len(daily))] == [
        f"2026-01-01T00:00:00{offset}",
        f"2026-01-02T00:00:00{offset}",
        f"2026-01-03T00:00:00{offset}",
        f"2026-01-04T00:00:00{offset}",
    ]


def test_half_hour_spring_forward_of_lord_howe_leaves_a_30_minute_bucket():
    # Clocks go from 02:00 to 02:30 on 2026-10-04: the 01:00 bucket is a real hour, and the 02:00
    # bucket, whose first half the clock skips, runs from the change to 03:00 (30 real minutes).
    b = make_buckets("hourly", local(LORD_HOWE, 2026, 10, 4), local(LORD_HOWE, 2026, 10, 4, 6), LORD_HOWE)
    assert len(b) == 6
    assert b.label(1) == "2026-10-04T01:00:00+10:30"
    assert b.label(2) == "2026-10-04T02:30:00+11:00"
    assert b.bounds[2] == utc(2026, 10, 3, 15, 30)
    assert durations(b)[1:3] == [timedelta(hours=1), timedelta(minutes=30)]
    assert local(LORD_HOWE, 2026, 10, 4, 3) in b.bounds


def test_half_hour_fall_back_of_lord_howe_leaves_a_90_minute_bucket():
    # Clocks go from 02:00 back to 01:30 on 2026-04-05: the 01:00 bucket holds both passes of 01:30.
    b = make_buckets("hourly", local(LORD_HOWE, 2026, 4, 5), local(LORD_HOWE, 2026, 4, 5, 6), LORD_HOWE)
    assert len(b) == 6
    assert b.label(1) == "2026-04-05T01:00:00+11:00"
    assert b.label(2) == "2026-04-05T02:00:00+10:30"
    assert durations(b)[1] == timedelta(minutes=90)


def _wall_clock_hour(moment: datetime, tz: ZoneInfo) -> datetime:
    """The reference: the local time truncated to its hour, read back as zoneinfo reads a wall time
    (the same pass of a repeated hour; a skipped one at the offset before the change), as PostgreSQL's
    date_trunc('hour', moment, tz) does."""
    return moment.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(UTC)


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (LORD_HOWE, date(2026, 10, 4)),
        (LORD_HOWE, date(2026, 4, 5)),
        (NY, date(2026, 3, 8)),
        (NY, date(2026, 11, 1)),
        (BERLIN, date(2026, 3, 29)),
        (BERLIN, date(2026, 10, 25)),
        (KATHMANDU, date(2026, 6, 1)),
        (ZoneInfo("America/St_Johns"), date(2026, 3, 8)),
        # Whole local days the clock skipped (the zones crossed the date line eastwards).
        (ZoneInfo("Pacific/Apia"), date(2011, 12, 30)),
        (ZoneInfo("Pacific/Kiritimati"), date(1994, 12, 31)),
    ],
)
def test_every_instant_falls_in_the_bucket_of_its_wall_clock_hour(tz: ZoneInfo, day: date) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(hours=3)
    end = start + timedelta(hours=30)
    b = make_buckets("hourly", start, end, tz)
    moment = start.astimezone(UTC)
    while moment < end:
        index = b.index_of(moment)
        assert index is not None
        assert b.bounds[index] == max(_wall_clock_hour(moment, tz), b.bounds[0]), moment
        moment += timedelta(minutes=7, seconds=13)
    # Every bucket holds an instant of its own hour: no empty bucket.
    assert all(a < z for a, z in zip(b.bounds, b.bounds[1:], strict=False))


def test_weeks_start_on_monday_and_first_bucket_contains_start():
    start = local(BERLIN, 2026, 11, 19, 15)  # a Thursday
    b = make_buckets("weekly", start, start + timedelta(days=10), BERLIN)
    assert b.label(0) == "2026-11-16T00:00:00+01:00"
    assert all(bound.astimezone(BERLIN).weekday() == 0 for bound in b.starts)
    assert b.bounds[-1] == start + timedelta(days=10)


def test_weekly_bucket_spanning_dst_is_one_hour_short():
    b = make_buckets("weekly", local(NY, 2026, 3, 2), local(NY, 2026, 3, 16), NY)
    assert durations(b) == [timedelta(days=7, hours=-1), timedelta(days=7)]


def test_monthly_quarterly_yearly_are_calendar_aligned():
    start = local(NY, 2025, 11, 20)
    end = local(NY, 2027, 2, 3)
    monthly = make_buckets("monthly", start, end, NY)
    assert monthly.label(0) == "2025-11-01T00:00:00-04:00"
    assert monthly.label(1) == "2025-12-01T00:00:00-05:00"
    assert len(monthly) == 16
    quarterly = make_buckets("quarterly", start, end, NY)
    assert [quarterly.label(i)[:10] for i in range(len(quarterly))] == [
        "2025-10-01",
        "2026-01-01",
        "2026-04-01",
        "2026-07-01",
        "2026-10-01",
        "2027-01-01",
    ]
    yearly = make_buckets("yearly", start, end, NY)
    assert [yearly.label(i)[:10] for i in range(len(yearly))] == ["2025-01-01", "2026-01-01", "2027-01-01"]


def test_index_of_is_half_open():
    b = make_buckets("daily", local(BERLIN, 2026, 1, 1), local(BERLIN, 2026, 1, 3), BERLIN)
    assert b.index_of(local(BERLIN, 2026, 1, 1)) == 0
    assert b.index_of(local(BERLIN, 2026, 1, 1, 23, 59, 59)) == 0
    assert b.index_of(local(BERLIN, 2026, 1, 2)) == 1
    assert b.index_of(local(BERLIN, 2026, 1, 3)) is None
    assert b.index_of(local(BERLIN, 2025, 12, 31, 23)) is None


def test_too_many_buckets_is_refused_and_the_limit_itself_allowed():
    start = utc(2026, 1, 1)
    assert len(make_buckets("hourly", start, start + timedelta(hours=10_000), ZoneInfo("UTC"))) == 10_000
    with pytest.raises(BucketError, match="limit of 10,000"):
        make_buckets("hourly", start, start + timedelta(hours=10_001), ZoneInfo("UTC"))


def test_bad_input_is_refused():
    start = utc(2026, 1, 1)
    with pytest.raises(BucketError, match="allowed: hourly, daily"):
        make_buckets("minutely", start, start + timedelta(days=1), NY)
    with pytest.raises(BucketError, match="before end"):
        make_buckets("daily", start, start, NY)
    with pytest.raises(BucketError, match="supported years"):
        make_buckets("yearly", datetime(9999, 6, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC), NY)


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("tz", [NY, BERLIN, KOLKATA, KATHMANDU, ZoneInfo("UTC")])
def test_every_instant_lands_in_the_bucket_of_its_local_period(granularity, tz):
    start = utc(2026, 1, 1)
    end = utc(2026, 1, 20) if granularity == "hourly" else utc(2027, 12, 31)
    b = make_buckets(granularity, start, end, tz)
    step = timedelta(minutes=37) if granularity == "hourly" else timedelta(hours=7, minutes=13)
    moment = start
    while moment < end:
        index = b.index_of(moment)
        assert index is not None
        wall, bucket_wall = moment.astimezone(tz), b.bounds[index].astimezone(tz)
        if granularity == "hourly":
            assert moment - b.bounds[index] < timedelta(hours=1)
            assert bucket_wall.minute == 0
            assert bucket_wall.hour in (wall.hour, (wall.hour - 1) % 24)
        else:
            assert bucket_wall.date() == period_start(granularity, wall.date())
        moment += step


def test_next_period_rolls_over_years():
    assert next_period("monthly", date(2026, 12, 1)) == date(2027, 1, 1)
    assert next_period("quarterly", date(2026, 10, 1)) == date(2027, 1, 1)
    assert next_period("yearly", date(2026, 1, 1)) == date(2027, 1, 1)
    assert period_start("quarterly", date(2026, 8, 17)) == date(2026, 7, 1)


@pytest.mark.parametrize("granularity", ["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"])
def test_cheap_bucket_check_agrees_with_counting(granularity):
    from webapp.analytics.buckets import check_bucket_count

    tz = ZoneInfo("America/New_York")
    start = datetime(2020, 3, 8, 1, 30, tzinfo=tz)
    for limit in (3, 50, 400):
        for span in (timedelta(hours=7), timedelta(days=40), timedelta(days=500), timedelta(days=4000)):
            end = start + span
            try:
                make_buckets(granularity, start, end, tz, max_buckets=limit)
                fits = True
            except BucketError:
                fits = False
            if fits:
                check_bucket_count(granularity, start, end, tz, max_buckets=limit)
            else:
                with pytest.raises(BucketError):
                    check_bucket_count(granularity, start, end, tz, max_buckets=limit)


@pytest.mark.parametrize("granularity", ["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"])
@pytest.mark.parametrize("zone_name", ["Pacific/Apia", "Australia/Lord_Howe", "Europe/Berlin"])
def test_a_range_far_past_the_limit_is_refused_without_building_buckets(granularity, zone_name, monkeypatch):
    """Refused from the longest a bucket can be, before any bound is built; and that bound never
    refuses a range that fits (Apia skipped a whole day in 2011, its longest buckets)."""
    from webapp.analytics import buckets
    from webapp.analytics.buckets import check_bucket_count

    tz = ZoneInfo(zone_name)
    start = datetime(2011, 12, 1, tzinfo=tz)
    for limit in (3, 50, 400):
        for span in (timedelta(days=2), timedelta(days=60), timedelta(days=800)):
            end = start + span
            try:
                count = len(make_buckets(granularity, start, end, tz, max_buckets=100_000).bounds) - 1
            except BucketError:
                continue
            if count <= limit:
                check_bucket_count(granularity, start, end, tz, max_buckets=limit)

    def built(*args, **kwargs):
        raise AssertionError("buckets were built for a range far past the limit")

    if granularity not in ("hourly", "daily", "weekly"):
        return  # 249 years of months, quarters or years are under the limit
    monkeypatch.setattr(buckets, "make_buckets", built)
    with pytest.raises(BucketError) as refused:
        check_bucket_count(
            granularity, datetime(1950, 1, 1, tzinfo=UTC), datetime(2199, 1, 1, tzinfo=UTC), tz
        )
    assert refused.value.details["limit"] == buckets.MAX_BUCKETS
    assert refused.value.details["estimate"] > buckets.MAX_BUCKETS


@pytest.mark.parametrize(
    ("tz", "start", "end"),
    [
        # Offsets with seconds, whose whole hours lie between whole UTC minutes.
        ("Africa/Monrovia", datetime(1972, 1, 7, 0, 44, 30, tzinfo=UTC), datetime(1972, 1, 7, 3, tzinfo=UTC)),
        ("Africa/Monrovia", datetime(1972, 1, 6, 22, tzinfo=UTC), datetime(1972, 1, 7, 3, tzinfo=UTC)),
        ("Europe/Amsterdam", datetime(1937, 6, 30, 20, tzinfo=UTC), datetime(1937, 7, 1, 3, tzinfo=UTC)),
        ("America/Santiago", datetime(1916, 7, 1, 2, tzinfo=UTC), datetime(1916, 7, 1, 8, tzinfo=UTC)),
    ],
)
def test_offsets_with_seconds_are_bucketed_at_once_by_their_wall_clock_hours(tz, start, end):
    # Each of these walked whole UTC minutes for ever (a request held its worker's CPU).
    zone = ZoneInfo(tz)
    b = make_buckets("hourly", start, end, zone)
    assert all(a < z for a, z in zip(b.bounds, b.bounds[1:], strict=False))
    moment = start
    while moment < end:
        assert b.bounds[b.index_of(moment)] == max(_wall_clock_hour(moment, zone), b.bounds[0]), moment
        moment += timedelta(minutes=3, seconds=11)


@pytest.mark.parametrize(
    ("tz", "skipped"),
    [(ZoneInfo("Pacific/Apia"), date(2011, 12, 30)), (ZoneInfo("Pacific/Kiritimati"), date(1994, 12, 31))],
)
@pytest.mark.parametrize("granularity", ["hourly", "daily", "weekly", "monthly"])
def test_a_skipped_local_day_has_no_bucket_and_no_instant_is_lost(tz, skipped, granularity):
    # From two days before the skipped date to two days after, in real time.
    start = datetime.combine(skipped - timedelta(days=2), datetime.min.time(), tz).astimezone(UTC)
    end = start + timedelta(days=3)
    b = make_buckets(granularity, start, end, tz)
    assert all(a < z for a, z in zip(b.bounds, b.bounds[1:], strict=False))
    labels = b.labels
    assert len(set(labels)) == len(labels)
    assert not any(label.startswith(skipped.isoformat()) for label in labels)
    moment = start
    while moment < end:
        index = b.index_of(moment)
        assert index is not None
        wall, bucket_wall = moment.astimezone(tz), b.bounds[index].astimezone(tz)
        if granularity == "hourly":
            assert bucket_wall.replace(tzinfo=None) == wall.replace(
                minute=0, second=0, microsecond=0, tzinfo=None
            )
        else:
            assert bucket_wall.date() == max(
                period_start(granularity, wall.date()), b.bounds[0].astimezone(tz).date()
            )
        moment += timedelta(minutes=23)
    if granularity == "daily":
        assert len(b) == 3  # the days before, the day after it, and the one after that: 72 real hours
