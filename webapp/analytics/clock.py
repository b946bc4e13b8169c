"""The clock a duration metric is counted on: calendar time, or a schedule's business hours.

A duration metric's value is the length of an interval that ends at its event (e.value hours, from
the ticket's creation). On the calendar clock that length is the value itself; on a business clock it
is the schedule's open time inside the same interval: C(end) - C(start), where C is the open time
before an instant (open_us_sql: one index lookup in schedule_spans). Bucketing does not change, a
measurement stays in the bucket of its event; only its value is counted anew.

A metric that is not a duration (a count, a score) reads the same on every clock, so its reads drop
the clock (`for_metric`) and share the calendar answers and rollups.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.analytics.metrics import Metric
from webapp.analytics.window import QueryError
from webapp.clocks.business_time import Timeline, WeeklySchedule, from_us, timelines, to_us
from webapp.clocks.schedules import default_schedule, get_schedule, parse_definition
from webapp.core.vocabulary import CLOCKS
from webapp.models import Schedule

# The cache family of every answer counted on a schedule's clock: bumped by each schedule change.
FAMILY = "schedules"
# How far before a read's range the schedule's spans travel with its statement (about 800 spans of a
# schedule open twice a day): durations longer than this cost an index lookup at their start.
LOOKBACK = timedelta(days=400)
# Array literals kept per (schedule, version, first span, last span): a read of the same range reuses
# them until a span boundary passes.
CARRIED_MAX = 256
# How long a process trusts its copy of a schedule's version and definition.
VERSION_SECONDS = 10.0
_definitions: dict[int, tuple[float, int, WeeklySchedule]] = {}
_carried: OrderedDict[tuple[int, int, int, int], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Clock:
    """Calendar time (schedule_id None) or the open hours of one of the organization's schedules."""

    schedule_id: int | None = None

    @property
    def business(self) -> bool:
        return self.schedule_id is not None

    @property
    def name(self) -> str:
        return "business" if self.business else "calendar"

    def params(self) -> dict[str, Any]:
        """The clock in a cache key or a job's params ({} for calendar: older keys stay as they were)."""
        return {"clock": "business", "schedule_id": self.schedule_id} if self.business else {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Clock:
        """The clock `params()` wrote."""
        return cls(params.get("schedule_id")) if params.get("clock") == "business" else CALENDAR

    def for_metric(self, metric: Metric) -> Clock:
        """The clock `metric` is read on: this one for a duration, the calendar for anything else."""
        return self if metric.clocked else CALENDAR

    def families(self) -> set[str]:
        """The cache families an answer on this clock depends on, beyond its metrics'."""
        return {FAMILY} if self.business else set()

    def echo(self) -> dict[str, Any]:
        """The clock as answers state it."""
        return {"clock": self.name, "schedule_id": self.schedule_id}


CALENDAR = Clock()


def resolve(session: Session, org_id: int, clock: str, schedule_id: int | None) -> Clock:
    """The clock a request asks for: `schedule_id`, else the organization's default schedule.

    QueryError (400) for business hours with no schedule at all, or a schedule_id with the calendar
    clock; 404 for a schedule the organization does not have (another organization's included).
    """
    if clock not in CLOCKS:
        raise QueryError(f"clock {clock!r} is not one of {', '.join(CLOCKS)}", "clock")
    if clock == "calendar":
        if schedule_id is not None:
            raise QueryError("schedule_id is only for clock=business", "schedule_id")
        return CALENDAR
    if schedule_id is None:
        schedule = default_schedule(session, org_id)
        if schedule is None:
            raise QueryError(
                "clock=business needs a schedule: create one (POST /schedules) or pass schedule_id",
                "clock",
            )
        return Clock(schedule.id)
    if get_schedule(session, org_id, schedule_id) is None:
        raise QueryError(f"schedule {schedule_id} not found", "schedule_id", status=404)
    return Clock(schedule_id)


def value_sql(metric: Metric, clock: Clock) -> str:
    """The measured value `v` of one event `e` on `clock` (NULL for a pure count).

    On a business clock the SQL reads the parameters `bind` sets. A duration's interval starts at its
    end less e.value hours, exact to the microsecond; a time in statuses adds up the open hours of
    each of the ticket's spans in them, which the solve carries (detail "spans": [status, start,
    end] in microseconds since the Unix epoch, already cut at the solve).
    """
    if not clock.business or not metric.clocked:
        return metric.value_sql or "CAST(NULL AS double precision)"
    if metric.in_statuses:
        statuses = ", ".join(f"'{status}'" for status in metric.in_statuses)
        start, end = _span_instant("bsp.x->>1"), _span_instant("bsp.x->>2")
        return (
            f"(SELECT coalesce(sum({business_hours_sql(start, end)}), 0)"
            " FROM jsonb_array_elements(e.detail->'spans') AS bsp(x)"
            f" WHERE bsp.x->>0 IN ({statuses}))"
        )
    return business_hours_sql("e.occurred_at - e.value * interval '1 hour'", "e.occurred_at")


def _span_instant(micros: str) -> str:
    """SQL for the instant `micros` (text: microseconds since the Unix epoch) names, exactly."""
    return f"(TIMESTAMPTZ '1970-01-01 00:00:00+00' + CAST({micros} AS bigint) * INTERVAL '1 microsecond')"


def bind(session: Session, clock: Clock, params: dict[str, Any], *, start: datetime, end: datetime) -> None:
    """Set the parameters value_sql's business SQL reads, for events in [start, end).

    The schedule's open spans from LOOKBACK before `start` to `end` travel with the statement as
    arrays, so that C(t) of most instants is a binary search in memory (width_bucket), not an index
    lookup per row (about 10 us each, which made a business read of 50,000 raw measurements some
    fifteen times slower than its calendar twin). An instant before the arrays (a ticket created
    more than LOOKBACK before its event) is looked up in schedule_spans. The arrays are sent as
    array literals (text): a list of 1,200 datetimes costs psycopg some 25 ms to send, its literal
    0.2 ms; literals are kept per schedule version and span range, and the version is read again
    only every VERSION_SECONDS, so a read usually makes no round trip for its clock.
    """
    assert clock.schedule_id is not None
    params["schedule_id"] = clock.schedule_id
    # The arrays hold every span starting before `end`: an instant at or after it (a first reply
    # after the range, as the agents report measures) may lie past spans they lack, and is looked up.
    params["bs_until"] = end
    known = _definition(session, clock.schedule_id)
    if known is None:  # gone: every instant is looked up (and finds no span)
        params.update(_literals(None, to_us(end), 0, 0), bs_version=-1)
        return
    version, weekly = known
    params["bs_version"] = version
    spans = timelines.get(clock.schedule_id, version, weekly)
    first = max(int(np.searchsorted(spans.starts, to_us(start - LOOKBACK), side="right")) - 1, 0)
    last = int(np.searchsorted(spans.starts, to_us(end), side="left"))
    key = (clock.schedule_id, version, first, last)
    with _lock:
        found = _carried.get(key)
    if found is None:
        found = _literals(spans, to_us(end), first, last)
        with _lock:
            _carried[key] = found
            while len(_carried) > CARRIED_MAX:
                _carried.popitem(last=False)
    params.update(found)


def still_exists(session: Session, clock: Clock) -> bool:
    """Whether `clock`'s schedule is still there (the calendar always is); a deletion is seen within
    VERSION_SECONDS, or at once after `forget` (a live metric_update naming the schedule)."""
    return clock.schedule_id is None or _definition(session, clock.schedule_id) is not None


def forget(schedule_id: int) -> None:
    """Drop this process's copy of the schedule: the next read looks at its row (changed or gone)."""
    with _lock:
        _definitions.pop(schedule_id, None)


def _definition(session: Session, schedule_id: int) -> tuple[int, WeeklySchedule] | None:
    """The schedule's version and definition, read again once VERSION_SECONDS old (None: no such
    schedule). A statement checks the version itself (_CURRENT), so a copy that a change made stale
    costs lookups for those seconds, never a wrong answer."""
    now = time.monotonic()
    with _lock:
        found = _definitions.get(schedule_id)
    if found is not None and found[0] > now:
        return found[1], found[2]
    row = session.execute(
        select(Schedule.version, Schedule.timezone, Schedule.intervals, Schedule.holidays).where(
            Schedule.id == schedule_id
        )
    ).one_or_none()
    with _lock:
        if row is None:
            _definitions.pop(schedule_id, None)
            return None
        weekly = parse_definition(row.timezone, row.intervals, row.holidays).weekly
        _definitions[schedule_id] = (now + VERSION_SECONDS, row.version, weekly)
    return row.version, weekly


def _literals(spans: Timeline | None, end_us: int, first: int, last: int) -> dict[str, Any]:
    """The parameters of spans[first:last] (none: a single empty span at the end, so nothing is
    carried and every instant is looked up)."""
    if spans is None or last <= first:
        starts, before, lengths = np.array([end_us]), np.zeros(1, np.int64), np.zeros(1, np.int64)
    else:
        starts, before, lengths = (a[first:last] for a in (spans.starts, spans.before, spans.lengths))
    stamps = np.datetime_as_string(starts.astype("datetime64[us]"))
    return {
        "bs_first": from_us(int(starts[0])),
        "bs_starts": '{"' + 'Z","'.join(stamps.tolist()) + 'Z"}',
        "bs_before": "{" + ",".join(map(str, before.tolist())) + "}",
        "bs_lengths": "{" + ",".join(map(str, lengths.tolist())) + "}",
    }


# Each array is parsed once per statement, when its parameter is bound: the literal is sent untyped
# (psycopg's default for str) and the cast gives the parameter its array type, so every reference
# is the one bound value. (As sub-selects casting text, each reference was an init plan of its own
# parsing the whole literal again: a dozen parses of 1,500 instants, some 15 ms a statement.)
_STARTS = "(CAST(:bs_starts AS timestamptz[]))"
_BEFORE = "(CAST(:bs_before AS bigint[]))"
_LENGTHS = "(CAST(:bs_lengths AS bigint[]))"
# Whether the carried spans are the schedule's present ones (evaluated once per statement too).
_CURRENT = (
    "(SELECT coalesce(bool_or(s.version = CAST(:bs_version AS integer)), false)"
    " FROM schedules s WHERE s.id = CAST(:schedule_id AS bigint))"
)


def business_hours_sql(start: str, end: str) -> str:
    """SQL for the open hours of the bound schedule in [start, end), as double precision."""
    return f"CAST({open_us_sql(end)} - {open_us_sql(start)} AS double precision) / 3.6e9"


def open_us_sql(instant: str) -> str:
    """SQL for C(instant): the bound schedule's open microseconds before `instant` (bigint).

    The span starting last at or before the instant, its open time before, and the part of it
    before the instant. From the bound arrays by binary search when the instant is at or after
    their first span and before the end they were bound for, and they are of the schedule's present
    version, else from schedule_spans
    (one index lookup; 0 before the first span).
    Interval seconds are exact in double precision, spans being at most days long.
    """
    k = f"width_bucket({instant}, {_STARTS})"
    carried = (
        f"{_BEFORE}[{k}] + least(greatest(CAST(round(date_part('epoch',"
        f" {instant} - {_STARTS}[{k}]) * 1000000) AS bigint), 0), {_LENGTHS}[{k}])"
    )
    # The span's alias is one no caller uses, since `instant` may name the caller's own aliases.
    looked_up = (
        "coalesce((SELECT bspan.open_before_us + least(greatest(CAST(round(date_part('epoch',"
        f" {instant} - bspan.starts_at) * 1000000) AS bigint), 0), CAST(round(date_part('epoch',"
        " bspan.ends_at - bspan.starts_at) * 1000000) AS bigint)) FROM schedule_spans bspan"
        f" WHERE bspan.schedule_id = CAST(:schedule_id AS bigint) AND bspan.starts_at <= {instant}"
        " ORDER BY bspan.starts_at DESC LIMIT 1), 0)"
    )
    return (
        f"(CASE WHEN {instant} >= CAST(:bs_first AS timestamptz)"
        f" AND {instant} < CAST(:bs_until AS timestamptz) AND {_CURRENT} THEN {carried}"
        f" ELSE {looked_up} END)"
    )
