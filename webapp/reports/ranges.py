"""A report's relative range, resolved in its schedule's zone at the moment it runs.

All are whole local days (23 or 25 hours at DST changes), [start, end):
- last_7_days: the seven days before today;
- previous_day: yesterday;
- previous_week: Monday to Monday of the week before this one;
- previous_month: the first of last month to the first of this one;
- month_to_date: the first of this month to the end of today (as an export's default range ends).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.core.timeutil import local_midnight


def _bounds(name: str, today: date) -> tuple[date, date]:
    first_of_month = today.replace(day=1)
    if name == "last_7_days":
        return today - timedelta(days=7), today
    if name == "previous_day":
        return today - timedelta(days=1), today
    if name == "previous_week":
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(days=7), monday
    if name == "previous_month":
        return (first_of_month - timedelta(days=1)).replace(day=1), first_of_month
    if name == "month_to_date":
        return first_of_month, today + timedelta(days=1)
    raise ValueError(f"unknown range {name!r}")


def resolve(name: str, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the range `name` for a run at `now`, as instants in `tz`."""
    first, last = _bounds(name, now.astimezone(tz).date())
    return local_midnight(first, tz), local_midnight(last, tz)
