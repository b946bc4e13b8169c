"""Which local days can be summed, and which parts of a read may take summed days (metric_days).

Expected days are written out by hand from each zone's rules (DST dates of 2026), not computed.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.analytics import metric_days


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_berlin_days_across_the_autumn_change_are_24_and_25_hours():
    days = metric_days.local_days(ZoneInfo("Europe/Berlin"), utc(2026, 10, 23, 22), utc(2026, 10, 26, 23))
    assert days == [
        (utc(2026, 10, 23, 22), utc(2026, 10, 24, 22)),
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)),  # Sunday 25 October: 25 hours
        (utc(2026, 10, 25, 23), utc(2026, 10, 26, 23)),
    ]


def test_only_days_wholly_inside_the_range_count():
    # From mid-day to mid-day: the partial days at both ends are left out.
    days = metric_days.local_days(ZoneInfo("UTC"), utc(2026, 3, 1, 12), utc(2026, 3, 4, 12))
    assert days == [(utc(2026, 3, 2), utc(2026, 3, 3)), (utc(2026, 3, 3), utc(2026, 3, 4))]


def test_days_whose_bounds_are_not_whole_utc_hours_are_never_summed():
    assert metric_days.local_days(ZoneInfo("Asia/Kolkata"), utc(2026, 3, 1), utc(2026, 3, 10)) == []
    assert metric_days.local_days(ZoneInfo("Asia/Kathmandu"), utc(2026, 3, 1), utc(2026, 3, 10)) == []
    # Lord Howe is +11 in its summer (midnight 13:00 UTC) and +10:30 in winter (13:30 UTC): summer days
    # are summed, winter ones not, and the day of the change (5 April 2026) ends off the hour.
    howe = ZoneInfo("Australia/Lord_Howe")
    assert metric_days.local_days(howe, utc(2026, 4, 2, 13), utc(2026, 4, 7, 13)) == [
        (utc(2026, 4, 2, 13), utc(2026, 4, 3, 13)),
        (utc(2026, 4, 3, 13), utc(2026, 4, 4, 13)),
    ]


def test_spans_are_the_covered_parts_between_bucket_edges_long_enough_for_a_day():
    covered = [(utc(2026, 5, 1, 3), utc(2026, 5, 20, 5))]
    # Weekly edges: the covered piece is cut at each edge inside it.
    edges = [utc(2026, 4, 27), utc(2026, 5, 4), utc(2026, 5, 11), utc(2026, 5, 18), utc(2026, 5, 25)]
    assert metric_days.spans(covered, edges) == [
        (utc(2026, 5, 1, 3), utc(2026, 5, 4)),
        (utc(2026, 5, 4), utc(2026, 5, 11)),
        (utc(2026, 5, 11), utc(2026, 5, 18)),
        (utc(2026, 5, 18), utc(2026, 5, 20, 5)),
    ]
    # Hourly edges leave no part long enough: no day can be taken.
    hourly = [utc(2026, 5, 1) + timedelta(hours=h) for h in range(24 * 20)]
    assert metric_days.spans(covered, hourly) == []
    assert metric_days.read_params(covered, hourly) is None
    # A whole-range aggregation (two edges): the covered piece is one span.
    whole = [utc(2026, 5, 1), utc(2026, 5, 21)]
    assert metric_days.read_params(covered, whole) == {
        "days_lo": utc(2026, 5, 1, 3),
        "days_hi": utc(2026, 5, 20, 5),
    }
    # A covered piece shorter than a day (a short range, or a day cut by dirty hours) has no span.
    assert metric_days.spans([(utc(2026, 5, 1), utc(2026, 5, 1, 22))], whole) == []


def test_a_date_the_clock_skipped_is_no_day():
    apia = ZoneInfo("Pacific/Apia")
    start = datetime(2011, 12, 28, tzinfo=apia).astimezone(UTC)
    end = datetime(2012, 1, 2, tzinfo=apia).astimezone(UTC)
    days = metric_days.local_days(apia, start, end)
    assert [lo.astimezone(apia).date().isoformat() for lo, _ in days] == [
        "2011-12-28",
        "2011-12-29",
        "2011-12-31",
        "2012-01-01",
    ]
    assert all(lo < hi for lo, hi in days)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(days))
