"""Five-field cron expressions in an IANA zone, and when one fires next.

Fields: minute, hour, day of month, month, day of week (names, ranges, steps and lists; day of month
and day of week together fire on either, as cron does). The expression reads local wall-clock time:
a time the spring change skips runs once, at the end of the gap (02:30 on the day New York skips
02:00 to 03:00 runs at 03:00); a time the autumn change repeats runs once, at its first occurrence.
The wall-clock times come from cronsim walked without a zone, and each is placed here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

FIELDS = 5
MAX_LENGTH = 200
# The walk of wall-clock times starts this far before `after`'s own: a gap's times lie before the wall
# time of its end (02:30 fires at 03:00), and a repeated hour's first occurrence before its second.
LOOK_BACK = timedelta(hours=3)
# Standard cron: numbers, `*`, ranges, steps and lists, and names in the month and day-of-week fields
# only. cronsim also reads extensions (`L`, `W`, `#`, `?`) that standard cron does not: refused.
_FIELD_CHARACTERS = re.compile(r"[0-9A-Za-z*,/-]+")
_MONTHS = frozenset(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
_WEEKDAYS = frozenset(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NAMES_ALLOWED = (frozenset(), frozenset(), frozenset(), _MONTHS, _WEEKDAYS)


class CronError(ValueError):
    """An expression that is not five valid cron fields; the message says which is wrong."""


def check(expression: str) -> str:
    """The expression with its fields single-spaced; CronError when it is not valid five-field cron."""
    fields = expression.split()
    if len(fields) != FIELDS or len(expression) > MAX_LENGTH:
        raise CronError(
            "cron must have five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * mon'"
        )
    for name, field, allowed in zip(_FIELD_NAMES, fields, _NAMES_ALLOWED, strict=True):
        words = re.findall(r"[A-Za-z]+", field)
        if not _FIELD_CHARACTERS.fullmatch(field) or any(word.lower() not in allowed for word in words):
            raise CronError(
                f"cron {expression!r}: the {name} field {field!r} is not standard cron (numbers, *, ranges,"
                " steps and lists; month and weekday names in their own fields)"
            )
    normalized = " ".join(fields)
    try:
        CronSim(normalized, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronError(f"cron {expression!r}: {exc}") from exc
    return normalized


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a naive local wall-clock time fires at in `tz`: its first occurrence when the
    autumn change repeats it, the end of the gap when the spring change skips it."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Skipped: read with the offset before the change (fold=0) it lands after the gap, with the one
    # after it (fold=1) before; the gap ends at the change between them, found to the second (zones
    # change on whole seconds).
    instants = sorted((wall.replace(tzinfo=tz, fold=1).astimezone(UTC), first))
    later = instants[1].astimezone(tz).utcoffset()
    low, high = (int(moment.timestamp()) for moment in instants)
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == later:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the expression fires in `tz` (UTC).

    The expression's times are walked as naive wall-clock times (cronsim's own handling of the changes
    treats `*` and step fields as intervals and drops a skipped time instead of moving it) and each
    is placed with _instant: every time a gap skips runs at its end, once.
    """
    start = after.astimezone(tz).replace(tzinfo=None) - LOOK_BACK
    for wall in CronSim(expression, start):
        moment = _instant(wall, tz)
        if moment > after:
            return moment
    raise CronError(f"cron {expression!r} never fires")  # cronsim stops only past its last year
