"""A report.ready payload's download link is absolute: its receiver has no base to resolve it on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from webapp.reports.runs import _ready_data

SCHEDULE = SimpleNamespace(id=4, name="daily", timezone="Europe/Berlin")
RUN = SimpleNamespace(
    job_id=uuid.uuid4(),
    range_start=datetime(2026, 12, 1, tzinfo=UTC),
    range_end=datetime(2026, 12, 2, tzinfo=UTC),
)
LINK = "/api/v1/exports/e1/download?token=t"


def test_a_relative_link_is_made_absolute_on_the_base():
    data = _ready_data(SCHEDULE, RUN, {"download_url": LINK}, "http://127.0.0.1:8000/")
    assert data["download_url"] == "http://127.0.0.1:8000" + LINK


def test_an_absolute_link_stays_and_no_base_leaves_it_as_made():
    absolute = "https://support.example.com" + LINK
    assert _ready_data(SCHEDULE, RUN, {"download_url": absolute}, "http://x")["download_url"] == absolute
    assert _ready_data(SCHEDULE, RUN, {"download_url": LINK}, "")["download_url"] == LINK
    assert _ready_data(SCHEDULE, RUN, {}, "http://x")["download_url"] is None
