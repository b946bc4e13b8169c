"""A range's start and end: the forms the server reads are the forms the API document's pattern
admits (schemathesis checks both ways: what the document allows is accepted, what it forbids refused)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from webapp.api.schemas.fields import ISO_PATTERN
from webapp.core.timeutil import TimeError, parse_datetime

DOCUMENTED = re.compile(ISO_PATTERN["pattern"])
READ = [
    "2026-03-01",
    "2026-03-01T09",
    "2026-03-01 09:30",
    "2026-03-01T09:30:00",
    "2026-03-01T09:30:00.5Z",
    "2026-03-01T09:30:00.123456+01:00",
    "2026-03-01T09:30:00+0100",
    "2026-03-01T09:30:00-03",
    "2026-03-01T09:30:00z",
    # (1900-01-01 itself is read in UTC and west of it; in Berlin its midnight is an instant of 1899.)
    "1900-01-02",
    "2199-12-31T23:59:59+00:00",
    # What other clients write: .NET's seven fraction digits, Go's nine, spaces around, an offset
    # with seconds (Python's isoformat of an old local mean time).
    "2009-06-15T13:45:30.0000000-07:00",
    "2026-03-01T09:30:00.123456789Z",
    " 2026-03-01 ",
    "1937-06-30T12:00:00+00:19:32",
]
REFUSED = [
    "20260301",
    "2026-W09-1",
    "2026-060",
    "2026-03-01+01:00",
    "2026-03-01T24:00",
    "2026-03-01T09:30+1",
    "1899-12-31",
    "2200-01-01",
    "tomorrow",
    "",
]


@pytest.mark.parametrize("text", READ)
def test_what_the_server_reads_the_document_admits(text):
    assert DOCUMENTED.fullmatch(text)
    parse_datetime(text, ZoneInfo("Europe/Berlin"), "start")


@pytest.mark.parametrize("text", REFUSED)
def test_what_the_document_forbids_the_server_refuses(text):
    assert not DOCUMENTED.fullmatch(text)
    with pytest.raises(TimeError):
        parse_datetime(text, ZoneInfo("Europe/Berlin"), "start")


def test_the_first_day_is_read_where_its_midnight_is_an_instant_of_1900():
    assert parse_datetime("1900-01-01", ZoneInfo("UTC"), "start").year == 1900
    assert parse_datetime("1900-01-01", ZoneInfo("America/New_York"), "start").year == 1900
    with pytest.raises(TimeError, match=r"\(1899-12-31T23:00:00Z\)"):
        parse_datetime("1900-01-01", ZoneInfo("Europe/Berlin"), "start")
