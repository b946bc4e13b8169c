"""Business-hours schedules: validation, storage with their open spans, and their business time.

Every change bumps the schedule's version and rewrites its spans (schedule_spans) in the same
transaction, so the SQL business time and the in-process timelines (keyed by id and version) move
together. Writes of one organization's schedules and SLA policy take its row lock (FOR NO KEY
UPDATE, which ticket writes' foreign-key checks do not wait for), so "exactly one default" and "the
policy's schedule exists" hold under concurrent requests.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from webapp.clocks import pending
from webapp.clocks.business_time import (
    DAY_SECONDS,
    DAYS,
    EPOCH,
    Interval,
    Timeline,
    WeeklySchedule,
    timelines,
)
from webapp.core.timeutil import EARLIEST, LATEST, TimeError, utcnow, zone
from webapp.models import ReportSchedule, Schedule, ScheduleSpan, SlaPolicy

MAX_INTERVALS = 50
MAX_HOLIDAYS = 1000
MAX_NAME = 200
MAX_SCHEDULES = 20
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}")


class ClockError(ValueError):
    """A schedule or SLA policy request the platform refuses; `status` is the HTTP status that fits it."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Definition:
    """A validated schedule: its stored form and what business time is computed from."""

    timezone: str
    intervals: list[dict[str, str]]
    holidays: list[dict[str, str]]
    weekly: WeeklySchedule


def parse_time(text: str, *, end: bool) -> int:
    """Seconds after midnight of "HH:MM" (00:00 to 23:59; "24:00" only as an end), or ValueError."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not a time HH:MM")
    hours, minutes = int(text[:2]), int(text[3:])
    if (hours, minutes) == (24, 0):
        if end:
            return DAY_SECONDS
        raise ValueError("24:00 may only end an interval")
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59{', or 24:00' if end else ''})")
    return hours * 3600 + minutes * 60


def format_time(seconds: int) -> str:
    """ "HH:MM" of seconds after midnight (86400 is "24:00")."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_definition(
    timezone: str, intervals: list[dict[str, str]], holidays: list[dict[str, str]]
) -> Definition:
    """Check a schedule's zone, intervals and holidays; ClockError names the first bad field."""
    try:
        canonical = zone(timezone).key
    except TimeError as exc:
        raise ClockError(str(exc), field="timezone") from exc
    if not intervals:
        raise ClockError("a schedule needs at least one interval", field="intervals")
    if len(intervals) > MAX_INTERVALS:
        raise ClockError(f"a schedule has at most {MAX_INTERVALS} intervals", field="intervals")
    parsed: list[tuple[int, Interval]] = []
    for index, raw in enumerate(intervals):
        where = f"intervals.{index}"
        if raw["day"] not in DAYS:
            raise ClockError(
                f"{where}.day {raw['day']!r} is not one of {', '.join(DAYS)}", field=f"{where}.day"
            )
        bounds = []
        for name in ("start", "end"):
            try:
                bounds.append(parse_time(raw[name], end=name == "end"))
            except ValueError as exc:
                raise ClockError(f"{where}.{name}: {exc}", field=f"{where}.{name}") from exc
        if bounds[1] <= bounds[0]:
            raise ClockError(
                f"{where} ends at {raw['end']}, not after its start {raw['start']}", field=f"{where}.end"
            )
        parsed.append((index, Interval(DAYS.index(raw["day"]), bounds[0], bounds[1])))
    _refuse_overlaps(parsed)
    days = _holidays(holidays)
    ordered = sorted((interval for _, interval in parsed), key=lambda i: (i.day, i.start))
    return Definition(
        timezone=canonical,
        intervals=[
            {"day": DAYS[i.day], "start": format_time(i.start), "end": format_time(i.end)} for i in ordered
        ],
        holidays=[{"date": day.isoformat(), "name": name} for day, name in sorted(days.items())],
        weekly=WeeklySchedule(canonical, tuple(ordered), frozenset(days)),
    )


def _refuse_overlaps(parsed: list[tuple[int, Interval]]) -> None:
    by_day = sorted(parsed, key=lambda item: (item[1].day, item[1].start))
    for (first, a), (second, b) in itertools.pairwise(by_day):
        if a.day == b.day and b.start < a.end:
            raise ClockError(
                f"intervals.{first} and intervals.{second} overlap on {DAYS[a.day]}"
                f" ({_span(a)} and {_span(b)})",
                field=f"intervals.{second}",
            )


def _span(interval: Interval) -> str:
    return f"{format_time(interval.start)}-{format_time(interval.end)}"


def _holidays(holidays: list[dict[str, str]]) -> dict[date, str]:
    if len(holidays) > MAX_HOLIDAYS:
        raise ClockError(f"a schedule has at most {MAX_HOLIDAYS} holidays", field="holidays")
    days: dict[date, str] = {}
    for index, raw in enumerate(holidays):
        field = f"holidays.{index}.date"
        try:
            day = date.fromisoformat(raw["date"]) if len(raw["date"]) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise ClockError(f"{field} {raw['date']!r} is not a date YYYY-MM-DD", field=field)
        if not EARLIEST.year <= day.year < LATEST.year:
            raise ClockError(f"{field} {raw['date']} is outside the years 1900 to 2199", field=field)
        if day in days:
            raise ClockError(f"{field} {raw['date']} is given twice", field=field)
        days[day] = raw.get("name") or ""
    return days


def weekly(schedule: Schedule) -> WeeklySchedule:
    """What business time is computed from, out of a stored schedule."""
    return parse_definition(schedule.timezone, schedule.intervals, schedule.holidays).weekly


def timeline(schedule: Schedule) -> Timeline:
    """The open spans of this version of the schedule (cached in the process)."""
    return timelines.get(schedule.id, schedule.version, weekly(schedule))


def lock_organization(session: Session, org_id: int) -> None:
    """Serialise changes of the organization's schedules and SLA policy until the transaction ends."""
    session.execute(text("SELECT 1 FROM organizations WHERE id = :org FOR NO KEY UPDATE"), {"org": org_id})


def _refresh(session: Session, schedule: Schedule) -> None:
    """The schedule as it is now that the organization's lock is held; ClockError 404 when another
    request deleted it meanwhile (a PATCH or DELETE racing a DELETE)."""
    schedule_id = schedule.id
    # One read that both finds the row and loads it into `schedule` (populate_existing).
    query = select(Schedule).where(Schedule.id == schedule_id).execution_options(populate_existing=True)
    if session.scalar(query) is None:
        raise ClockError(f"schedule {schedule_id} not found (deleted meanwhile)", status=404)


def list_schedules(session: Session, org_id: int) -> list[Schedule]:
    """The organization's schedules, oldest first."""
    return list(session.scalars(select(Schedule).where(Schedule.org_id == org_id).order_by(Schedule.id)))


def get_schedule(session: Session, org_id: int, schedule_id: int) -> Schedule | None:
    """The schedule if it belongs to the organization (None for ids no bigint holds)."""
    if not 0 < schedule_id < 2**63:
        return None
    return session.scalar(select(Schedule).where(Schedule.id == schedule_id, Schedule.org_id == org_id))


def default_schedule(session: Session, org_id: int) -> Schedule | None:
    """The organization's default schedule, if it has any schedule."""
    return session.scalar(select(Schedule).where(Schedule.org_id == org_id, Schedule.is_default))


def create_schedule(session: Session, org_id: int, fields: dict[str, Any]) -> Schedule:
    """Add a schedule; the organization's first one, or one asked to be, becomes the default."""
    definition = parse_definition(fields["timezone"], fields["intervals"], fields.get("holidays") or [])
    lock_organization(session, org_id)
    count = session.scalar(select(func.count()).select_from(Schedule).where(Schedule.org_id == org_id)) or 0
    if count >= MAX_SCHEDULES:
        raise ClockError(
            f"an organization has at most {MAX_SCHEDULES} schedules; delete one first", status=409
        )
    make_default = count == 0 or bool(fields.get("default"))
    if make_default:
        _clear_default(session, org_id)
    now = utcnow()
    schedule = Schedule(
        org_id=org_id,
        name=fields["name"],
        timezone=definition.timezone,
        intervals=definition.intervals,
        holidays=definition.holidays,
        is_default=make_default,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    session.flush()
    write_spans(session, schedule.id, timelines.get(schedule.id, 1, definition.weekly))
    return schedule


def update_schedule(session: Session, org_id: int, schedule: Schedule, fields: dict[str, Any]) -> bool:
    """Apply a partial change; True when business time changed (zone, intervals or holidays)."""
    for name, value in fields.items():
        if value is None:
            raise ClockError(f"{name} cannot be null", field=name)
    lock_organization(session, org_id)
    _refresh(session, schedule)
    if fields.get("default") is False and schedule.is_default:
        raise ClockError(
            "this is the default schedule; make another schedule the default instead",
            field="default",
            status=409,
        )
    clock_fields = {"timezone", "intervals", "holidays"} & set(fields)
    definition = None
    if clock_fields:
        definition = parse_definition(
            fields.get("timezone", schedule.timezone),
            fields.get("intervals", schedule.intervals),
            fields.get("holidays", schedule.holidays),
        )
        schedule.timezone = definition.timezone
        schedule.intervals = definition.intervals
        schedule.holidays = definition.holidays
    if "name" in fields:
        schedule.name = fields["name"]
    if fields.get("default") and not schedule.is_default:
        _clear_default(session, org_id)
        schedule.is_default = True
    # The version is the business time's: a new name or default leaves every answer and rollup on
    # this schedule as it was, so only a change of zone, intervals or holidays moves it on.
    if definition is not None:
        schedule.version += 1
    schedule.updated_at = utcnow()
    session.flush()
    if definition is not None:
        write_spans(session, schedule.id, timelines.get(schedule.id, schedule.version, definition.weekly))
        if session.scalar(select(SlaPolicy.schedule_id).where(SlaPolicy.org_id == org_id)) == schedule.id:
            pending.mark_organization(session, org_id)
    return definition is not None


def delete_schedule(session: Session, org_id: int, schedule: Schedule) -> None:
    """Remove a schedule that neither the SLA policy nor a report schedule uses and that is not the
    default of several (409 otherwise)."""
    lock_organization(session, org_id)
    _refresh(session, schedule)
    # The row itself, before looking for its users: a report being saved on it holds it (FOR KEY SHARE,
    # reports.schedules) until it commits, and is then found below.
    session.execute(select(Schedule.id).where(Schedule.id == schedule.id).with_for_update())
    used = session.scalar(select(SlaPolicy.org_id).where(SlaPolicy.schedule_id == schedule.id))
    if used is not None:
        raise ClockError(
            "the SLA policy counts business hours on this schedule; give the policy another clock first",
            status=409,
        )
    # A report's saved export names the schedule its business hours are counted on (resolved when it
    # was saved): its runs would count them on a schedule that is gone.
    reports = session.scalars(
        select(ReportSchedule.id)
        .where(
            ReportSchedule.org_id == org_id,
            ReportSchedule.export_params["query"]["schedule_id"].as_integer() == schedule.id,
        )
        .order_by(ReportSchedule.id)
    ).all()
    if reports:
        names = ", ".join(str(report) for report in reports[:10])
        raise ClockError(
            f"report schedule(s) {names} count business hours on this schedule; change or delete them first",
            status=409,
        )
    others = session.scalar(
        select(func.count())
        .select_from(Schedule)
        .where(Schedule.org_id == org_id, Schedule.id != schedule.id)
    )
    if schedule.is_default and others:
        raise ClockError(
            "this is the default schedule; make another schedule the default before deleting it", status=409
        )
    session.delete(schedule)
    session.flush()


def _clear_default(session: Session, org_id: int) -> None:
    session.execute(
        update(Schedule).where(Schedule.org_id == org_id, Schedule.is_default).values(is_default=False)
    )
    session.flush()


# Binary COPY: a signature, flags and header extension, then per row a field count and each field
# as a length and big-endian bytes; timestamps are microseconds since 2000-01-01 UTC.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") * 2
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_US = (EPOCH.replace(year=2000) - EPOCH) // timedelta(microseconds=1)
_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("l1", ">i4"),
        ("schedule_id", ">i8"),
        ("l2", ">i4"),
        ("starts_at", ">i8"),
        ("l3", ">i4"),
        ("ends_at", ">i8"),
        ("l4", ">i4"),
        ("open_before_us", ">i8"),
    ]
)


def write_spans(session: Session, schedule_id: int, spans: Timeline) -> None:
    """Replace the schedule's rows in schedule_spans with `spans`, by one binary COPY."""
    session.execute(delete(ScheduleSpan).where(ScheduleSpan.schedule_id == schedule_id))
    rows = np.zeros(len(spans.starts), dtype=_ROW)
    rows["fields"] = 4
    rows["l1"] = rows["l2"] = rows["l3"] = rows["l4"] = 8
    rows["schedule_id"] = schedule_id
    rows["starts_at"] = spans.starts - _PG_EPOCH_US
    rows["ends_at"] = spans.ends - _PG_EPOCH_US
    rows["open_before_us"] = spans.before
    connection = session.connection().connection.driver_connection
    with (
        connection.cursor() as cur,
        cur.copy(
            "COPY schedule_spans (schedule_id, starts_at, ends_at, open_before_us) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(_COPY_HEADER)
        copy.write(rows.tobytes())
        copy.write(_COPY_TRAILER)
