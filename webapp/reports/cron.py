"""Five-field cron expressions in an IANA zone, and when one fires next.

Fields: minute, hour, day of month, month, day of week (names, ranges, steps and lists; day of month
and day of week together fire on either, as cron does). The expression reads local wall-clock time:
a time the spring change skips runs once, at the end of the gap (02:30 on the day New York skips
02:00 to 03:00 runs at 03:00); a time the autumn change repeats runs once, at its first occurrence.
cronsim moves a skipped time to the end of its gap; the second occurrences it gives of a repeated
time are dropped here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

FIELDS = 5
MAX_LENGTH = 200


class CronError(ValueError):
    """An expression that is not five valid cron fields; the message says which is wrong."""


def check(expression: str) -> str:
    """The expression with its fields single-spaced; CronError when it is not valid five-field cron."""
    fields = expression.split()
    if len(fields) != FIELDS or len(expression) > MAX_LENGTH:
        raise CronError(
            "cron must have five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * mon'"
        )
    normalized = " ".join(fields)
    try:
        CronSim(normalized, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronError(f"cron {expression!r}: {exc}") from exc
    return normalized


def _second_occurrence(moment: datetime, tz: ZoneInfo) -> bool:
    """Whether `moment` is the later of two instants with the same local wall-clock time."""
    wall = moment.astimezone(tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return first < moment.astimezone(UTC) and wall.replace(tzinfo=tz, fold=1).astimezone(UTC) != first


def next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the expression fires in `tz` (UTC)."""
    for candidate in CronSim(expression, after.astimezone(tz)):
        moment = candidate.astimezone(UTC)
        if moment <= after or _second_occurrence(candidate, tz):
            continue
        return moment
    raise CronError(f"cron {expression!r} never fires")  # cronsim stops only past its last year
