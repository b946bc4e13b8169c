"""Which snapshot periods have closed for an organization's time zone at a given instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.analytics.buckets import next_period, period_start
from webapp.core.timeutil import local_midnight
from webapp.core.vocabulary import SNAPSHOT_TYPES


@dataclass(frozen=True)
class Period:
    """One local day, week (from Monday) or month: its first date and its [start, end) instants."""

    snapshot_type: str
    first_date: date
    start: datetime
    end: datetime


def period_of(snapshot_type: str, day: date, tz: ZoneInfo) -> Period:
    """The period of `snapshot_type` holding the local date `day`."""
    first = period_start(snapshot_type, day)
    after = next_period(snapshot_type, first)
    return Period(snapshot_type, first, local_midnight(first, tz), local_midnight(after, tz))


def latest_closed(snapshot_type: str, tz: ZoneInfo, now: datetime) -> Period:
    """The most recent period of `snapshot_type` that ended at or before `now` in `tz`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(tz).date()
    # The period holding today's local date is still open; the one before it is the latest closed.
    current = period_start(snapshot_type, today)
    return period_of(snapshot_type, current - timedelta(days=1), tz)


def due_periods(
    tz: ZoneInfo, now: datetime, *, grace: timedelta = timedelta(0), types: tuple[str, ...] = SNAPSHOT_TYPES
) -> list[Period]:
    """The latest closed period of each type, counting a period closed only `grace` after its end.

    The grace leaves time for events committed just after midnight but stamped before it.
    """
    moment = now.astimezone(UTC) - grace
    return [latest_closed(snapshot_type, tz, moment) for snapshot_type in types]
