"""Which daily, weekly and monthly periods have closed, in the organization's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.analytics.periods import due_periods, latest_closed, period_of

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")


def _length(start: datetime, end: datetime) -> timedelta:
    # Aware datetimes of one zone subtract as wall clocks; real elapsed time needs UTC.
    return end.astimezone(UTC) - start.astimezone(UTC)


def _firsts(tz: ZoneInfo, now: datetime, **kw: object) -> dict[str, date]:
    return {p.snapshot_type: p.first_date for p in due_periods(tz, now, **kw)}  # type: ignore[arg-type]


def test_one_instant_closes_different_periods_in_two_zones() -> None:
    # Saturday 28 Feb 12:30 UTC is already Sunday 1 March 01:30 in Auckland (UTC+13).
    now = datetime(2026, 2, 28, 12, 30, tzinfo=UTC)
    assert _firsts(AUCKLAND, now) == {
        "daily": date(2026, 2, 28),
        "weekly": date(2026, 2, 16),
        "monthly": date(2026, 2, 1),
    }
    assert _firsts(LOS_ANGELES, now) == {
        "daily": date(2026, 2, 27),
        "weekly": date(2026, 2, 16),
        "monthly": date(2026, 1, 1),
    }


def test_a_period_closes_exactly_at_local_midnight() -> None:
    midnight = datetime(2026, 3, 10, 0, 0, tzinfo=BERLIN)
    assert latest_closed("daily", BERLIN, midnight).first_date == date(2026, 3, 9)
    just_before = midnight - timedelta(microseconds=1)
    assert latest_closed("daily", BERLIN, just_before).first_date == date(2026, 3, 8)


def test_weeks_start_on_monday() -> None:
    monday_morning = datetime(2026, 3, 9, 8, 0, tzinfo=BERLIN)
    sunday_night = datetime(2026, 3, 8, 23, 0, tzinfo=BERLIN)
    assert latest_closed("weekly", BERLIN, monday_morning).first_date == date(2026, 3, 2)
    assert latest_closed("weekly", BERLIN, sunday_night).first_date == date(2026, 2, 23)


def test_month_and_year_boundaries() -> None:
    new_year = datetime(2026, 1, 1, 0, 5, tzinfo=LOS_ANGELES)
    assert _firsts(LOS_ANGELES, new_year) == {
        "daily": date(2025, 12, 31),
        "weekly": date(2025, 12, 22),
        "monthly": date(2025, 12, 1),
    }
    leap = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert latest_closed("daily", ZoneInfo("UTC"), leap).first_date == date(2024, 2, 29)


def test_grace_delays_the_close() -> None:
    now = datetime(2026, 3, 10, 0, 5, tzinfo=BERLIN)
    assert _firsts(BERLIN, now)["daily"] == date(2026, 3, 9)
    assert _firsts(BERLIN, now, grace=timedelta(minutes=10))["daily"] == date(2026, 3, 8)


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 3, 30), 24)],
)
def test_local_days_across_dst_are_real_lengths(day: date, hours: int) -> None:
    period = period_of("daily", day, BERLIN)
    assert _length(period.start, period.end) == timedelta(hours=hours)


def test_a_day_whose_midnight_is_skipped_starts_when_it_begins() -> None:
    # Havana skips from 00:00 to 01:00 on 8 March 2026; the day is 23 hours, starting at 01:00.
    havana = ZoneInfo("America/Havana")
    period = period_of("daily", date(2026, 3, 8), havana)
    assert period.start.astimezone(havana).hour == 1
    assert _length(period.start, period.end) == timedelta(hours=23)
    now = datetime(2026, 3, 8, 1, 30, tzinfo=havana)
    assert latest_closed("daily", havana, now).first_date == date(2026, 3, 7)


def test_period_bounds_are_local_midnights() -> None:
    period = period_of("monthly", date(2026, 3, 15), BERLIN)
    assert period.first_date == date(2026, 3, 1)
    assert period.start == datetime(2026, 3, 1, tzinfo=BERLIN)
    assert period.end == datetime(2026, 4, 1, tzinfo=BERLIN)
    # March in Berlin loses an hour to DST.
    assert _length(period.start, period.end) == timedelta(days=31, hours=-1)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_closed("daily", BERLIN, datetime(2026, 3, 10, 12, 0))
