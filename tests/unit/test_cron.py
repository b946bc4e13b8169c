"""Cron next runs across the 2026 DST changes of New York, Berlin and Lord Howe, against instants
worked out by hand from the zone rules (a spring-gap time runs once at the gap's end, a repeated
autumn time once, at its first occurrence)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from webapp.reports.cron import CronError, check, next_run


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _runs(expression: str, zone: str, after: str, count: int) -> list[datetime]:
    tz = ZoneInfo(zone)
    moment = _z(after)
    out = []
    for _ in range(count):
        moment = next_run(expression, tz, moment)
        out.append(moment)
    return out


CASES = [
    # New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
    ("30 2 * * *", "America/New_York", "2026-03-07T17:00Z", ["2026-03-08T07:00Z", "2026-03-09T06:30Z"]),
    ("0 2 * * *", "America/New_York", "2026-03-07T17:00Z", ["2026-03-08T07:00Z", "2026-03-09T06:00Z"]),
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-03-08T06:10Z",  # 01:10 EST
        ["2026-03-08T06:30Z", "2026-03-08T07:00Z", "2026-03-08T07:30Z"],  # 01:30 EST, 03:00 EDT once
    ),
    ("30 1 * * *", "America/New_York", "2026-10-31T16:00Z", ["2026-11-01T05:30Z", "2026-11-02T06:30Z"]),
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T04:40Z",  # 00:40 EDT
        ["2026-11-01T05:00Z", "2026-11-01T05:30Z", "2026-11-01T07:00Z"],  # 01:00, 01:30 EDT; 02:00 EST
    ),
    # 09:00 local on Mondays: 14:00Z before the spring change, 13:00Z after it.
    ("0 9 * * mon", "America/New_York", "2026-03-01T00:00Z", ["2026-03-02T14:00Z", "2026-03-09T13:00Z"]),
    # Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T11:00Z", ["2026-03-29T01:00Z", "2026-03-30T00:30Z"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T10:00Z", ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]),
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:30Z",  # 01:30 CEST
        ["2026-10-25T00:00Z", "2026-10-25T02:00Z"],  # 02:00 CEST, then 03:00 CET (not 02:00 CET)
    ),
    # Lord Howe: 2026-04-05 02:00 (+11) -> 01:30 (+10:30) at 15:00Z on the 4th;
    # 2026-10-04 02:00 (+10:30) -> 02:30 (+11) at 15:30Z on the 3rd: half-hour changes.
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T02:00Z", ["2026-10-03T15:30Z", "2026-10-04T15:15Z"]),
    (
        "*/10 * * * *",
        "Australia/Lord_Howe",
        "2026-10-03T15:15Z",  # 01:45 (+10:30)
        ["2026-10-03T15:20Z", "2026-10-03T15:30Z", "2026-10-03T15:40Z"],  # 01:50; 02:30 (+11) once; 02:40
    ),
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T01:00Z", ["2026-04-04T14:45Z", "2026-04-05T15:15Z"]),
    (
        "*/20 * * * *",
        "Australia/Lord_Howe",
        "2026-04-04T14:15Z",  # 01:15 (+11)
        ["2026-04-04T14:20Z", "2026-04-04T14:40Z", "2026-04-04T15:30Z"],  # the repeated 01:40 is skipped
    ),
    # A day whose only times the gap skips: `*` and step fields run at the gap's end too, once.
    (
        "*/20 2 28 3 *",
        "Europe/Berlin",  # 2027-03-28 02:00 CET -> 03:00 CEST (01:00Z)
        "2026-12-06T00:00Z",
        ["2027-03-28T01:00Z", "2028-03-28T00:00Z", "2028-03-28T00:20Z"],
    ),
    ("* 2 8 3 *", "America/New_York", "2026-03-01T00:00Z", ["2026-03-08T07:00Z", "2027-03-08T07:00Z"]),
    (
        "*/10 2 4 10 *",
        "Australia/Lord_Howe",
        "2026-10-01T00:00Z",
        ["2026-10-03T15:30Z", "2026-10-03T15:40Z", "2026-10-03T15:50Z"],  # 02:00-02:20 at 02:30 once
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), CASES)
def test_next_runs_across_dst_changes(expression, zone, after, expected):
    assert _runs(expression, zone, after, len(expected)) == [_z(e) for e in expected]


def test_next_run_is_strictly_after():
    tz = ZoneInfo("UTC")
    at_nine = datetime(2026, 5, 4, 9, tzinfo=UTC)
    assert next_run("0 9 * * *", tz, at_nine) == datetime(2026, 5, 5, 9, tzinfo=UTC)
    assert next_run("0 9 * * *", tz, datetime(2026, 5, 4, 8, 59, 59, 999999, tzinfo=UTC)) == at_nine


def test_day_of_month_and_weekday_fire_on_either():
    tz = ZoneInfo("UTC")
    # The 13th, or any Friday: 2026-02-06 is a Friday, the 13th of February 2026 one too.
    runs = _runs("0 0 13 * fri", "UTC", "2026-02-01T00:00Z", 3)
    assert runs == [_z("2026-02-06T00:00Z"), _z("2026-02-13T00:00Z"), _z("2026-02-20T00:00Z")]
    assert next_run("0 0 13 * *", tz, _z("2026-02-13T00:00Z")) == _z("2026-03-13T00:00Z")


@pytest.mark.parametrize(
    "expression",
    [
        "@daily",
        "* * * *",
        "0 0 * * * *",
        "61 * * * *",
        "0 25 * * *",
        "0 0 30 2 *",
        "x * * * *",
        "",
        # cronsim's extensions, which standard cron does not read
        "0 9 L * *",
        "0 9 15W * *",
        "0 9 * * mon#2",
        "0 9 * * 5L",
        "0 9 ? * mon",
        # names only in their own fields
        "0 9 * mon *",
        "0 9 * * jan",
        "0 9 mon * *",
    ],
)
def test_bad_expressions_are_refused(expression):
    with pytest.raises(CronError):
        check(expression)


@pytest.mark.parametrize(
    "expression", ["*/15 9-17 1,15 jan-mar,JUL mon-fri", "0 0 * * 0,7", "5 4 * * SUN", "0 22 * * 1-5/2"]
)
def test_standard_expressions_are_accepted(expression):
    assert check(expression) == expression


def test_fields_are_single_spaced():
    assert check("  0   9 * *\tmon-fri ") == "0 9 * * mon-fri"
