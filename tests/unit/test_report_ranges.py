"""Relative report ranges resolved in a zone at run time: whole local days, DST days included."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from webapp.reports.ranges import resolve

NY = ZoneInfo("America/New_York")


def _local(text: str, tz: ZoneInfo = NY) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


# A run on Wednesday 2026-03-11 at 00:30 New York time (04:30Z): the spring change was on Sunday the 8th.
RUN = datetime(2026, 3, 11, 4, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("previous_day", "2026-03-10T00:00", "2026-03-11T00:00"),
        ("last_7_days", "2026-03-04T00:00", "2026-03-11T00:00"),
        ("previous_week", "2026-03-02T00:00", "2026-03-09T00:00"),
        ("previous_month", "2026-02-01T00:00", "2026-03-01T00:00"),
        ("month_to_date", "2026-03-01T00:00", "2026-03-12T00:00"),
    ],
)
def test_ranges_are_local_days_in_the_schedule_zone(name, start, end):
    first, last = resolve(name, NY, RUN)
    assert (first, last) == (_local(start), _local(end))


def test_a_range_across_the_spring_change_is_a_day_shorter_in_real_time():
    first, last = resolve("previous_week", NY, RUN)
    # Monday 2 March 05:00Z to Monday 9 March 04:00Z: seven local days, 167 real hours.
    assert first.astimezone(UTC) == datetime(2026, 3, 2, 5, tzinfo=UTC)
    assert last.astimezone(UTC) == datetime(2026, 3, 9, 4, tzinfo=UTC)
    assert (last.astimezone(UTC) - first.astimezone(UTC)).total_seconds() == 167 * 3600


def test_the_zone_decides_which_day_it_is():
    # 04:30Z on the 11th is still the 10th in Los Angeles, already the 11th in Berlin.
    la, berlin = ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/Berlin")
    assert resolve("previous_day", la, RUN)[0] == _local("2026-03-09T00:00", la)
    assert resolve("previous_day", berlin, RUN)[0] == _local("2026-03-10T00:00", berlin)
    # January: the previous month is December of the year before.
    assert resolve("previous_month", berlin, datetime(2026, 1, 15, tzinfo=UTC)) == (
        _local("2025-12-01T00:00", berlin),
        _local("2026-01-01T00:00", berlin),
    )
