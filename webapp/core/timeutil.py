"""Time-zone helpers shared by the write and read paths."""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


class TimeError(ValueError):
    """A timestamp or time zone the platform cannot accept; the message says why, `field` (when known)
    which parameter held it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# The instants the platform measures: far enough inside the calendar that bucket arithmetic, offsets
# and "the period before" never leave it.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(moment: datetime) -> int:
    """`moment` (aware) as whole microseconds since the Unix epoch: exact, as datetimes are."""
    return (moment - _EPOCH) // _MICROSECOND


def from_epoch_micros(micros: int) -> datetime:
    """The UTC instant `micros` microseconds after the Unix epoch (epoch_micros's inverse)."""
    return _EPOCH + timedelta(microseconds=micros)


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or TimeError naming where the allowed names come from."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise TimeError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'")
    # Only the IANA names, matched whatever their case ("utc", "europe/berlin"): not the files beside
    # them in a zone database (localtime is the host's zone, right/ counts leap seconds, Factory).
    canonical = _iana_names().get(name.lower())
    if canonical is None:
        raise TimeError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TimeError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'") from exc


@functools.cache
def _iana_names() -> dict[str, str]:
    names = {n for n in available_timezones() if not n.startswith(("right/", "posix/"))} | {"UTC"}
    return {n.lower(): n for n in names - {"localtime", "Factory", "posixrules"}}


def is_valid_zone(name: str) -> bool:
    return name in available_timezones() or name == "UTC"


def localize(naive: datetime, tz: ZoneInfo, field: str = "timestamp") -> datetime:
    """Attach `tz` to a wall-clock time, refusing times that are ambiguous or do not exist there."""
    early = naive.replace(tzinfo=tz, fold=0)
    late = naive.replace(tzinfo=tz, fold=1)
    if early.utcoffset() != late.utcoffset():
        roundtrip = early.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if roundtrip != naive:
            raise TimeError(
                f"{field} {naive.isoformat()} does not exist in {tz.key} (clocks skip it); give a UTC offset",
                field,
            )
        raise TimeError(
            f"{field} {naive.isoformat()} is ambiguous in {tz.key} (it happens twice); give a UTC offset",
            field,
        )
    return early


def as_aware(value: datetime, tz: ZoneInfo, field: str = "timestamp") -> datetime:
    """`value` as an aware datetime: kept if it has an offset, else read as wall-clock time in `tz`."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    return localize(value, tz, field)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz` (where midnight is skipped, the moment the day begins)."""
    naive = datetime.combine(day, time())
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def in_calendar(value: datetime, field: str) -> datetime:
    """`value` (aware) in UTC if it lies in the years the platform measures, 1900 to 2199, else TimeError."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # an offset that moves a time at the calendar's edge off it
        raise _outside(field, value.isoformat()) from None
    if not EARLIEST <= utc <= LATEST:
        raise _outside(field, value.isoformat(), utc)
    return utc


def _outside(field: str, text: str, utc: datetime | None = None) -> TimeError:
    if utc is None or text.endswith("+00:00"):
        return TimeError(f"{field} {text} is outside the years 1900 to 2199 this platform measures", field)
    # A time written inside those years whose instant is not (the first hours of 1900 east of
    # Greenwich, the last of 2199 west of it): the bound is the instant, in UTC.
    return TimeError(
        f"{field} {text} ({utc.isoformat().replace('+00:00', 'Z')}) is outside the years 1900 to 2199 "
        "this platform measures (1900-01-01T00:00Z to 2200-01-01T00:00Z, as instants)",
        field,
    )


# The ISO 8601 forms a range's bounds are written in (the API document's pattern says the same):
# an extended date, or a date and a time to the hour, minute, second or a fraction of one (digits past
# the sixth, as .NET and Go write them, are cut: the platform keeps microseconds), with an optional
# offset (Z, +HH, +HHMM, +HH:MM, or +HH:MM:SS as Python writes old local mean times). Spaces around
# are ignored. Week dates, ordinal dates and the basic format are refused.
ISO_BOUND = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P<time>[T ]\d{2}(:\d{2}(:\d{2}(?P<fraction>\.\d+)?)?)?)?"
    r"(?P<offset>[Zz]|[+-]\d{2}(:?\d{2}(:\d{2})?)?)?",
    re.ASCII,
)


def parse_datetime(text: str, tz: ZoneInfo, field: str) -> datetime:
    """An ISO 8601 date or datetime (ISO_BOUND) in 1900..2199; a date means local midnight, a naive
    time local wall-clock."""
    raw = text.strip()
    match = ISO_BOUND.fullmatch(raw)
    if match is None or (match["offset"] and not match["time"]):
        raise TimeError(
            f"{field} {text!r} is not an ISO 8601 date or datetime "
            "(e.g. 2026-03-01 or 2026-03-01T09:30:00+01:00)",
            field,
        )
    if match["fraction"] and len(match["fraction"]) > 7:
        raw = raw.replace(match["fraction"], match["fraction"][:7], 1)
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            if not EARLIEST.year <= day.year < LATEST.year:
                raise _outside(field, raw)
            # As a time written with its hour: the instant must lie in the years too.
            midnight = local_midnight(day, tz)
            in_calendar(midnight, field)
            return midnight
        value = datetime.fromisoformat(raw)
    except TimeError:
        raise
    except ValueError as exc:
        raise TimeError(
            f"{field} {text!r} is not an ISO 8601 date or datetime "
            "(e.g. 2026-03-01 or 2026-03-01T09:30:00+01:00)",
            field,
        ) from exc
    if not EARLIEST.year <= value.year < LATEST.year:
        raise _outside(field, raw)
    aware = as_aware(value, tz, field)
    in_calendar(aware, field)
    return aware


def hours_between(start: datetime, end: datetime) -> float:
    """Elapsed hours (in UTC: Python subtracts two times of one zone object as wall-clock times)."""
    if start.tzinfo is not UTC:
        start = start.astimezone(UTC)
    if end.tzinfo is not UTC:
        end = end.astimezone(UTC)
    return (end - start).total_seconds() / 3600.0
