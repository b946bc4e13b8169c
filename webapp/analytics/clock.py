"""The clock a duration metric is counted on: calendar time, or a schedule's business hours.

A duration metric's value is the length of an interval that ends at its event (e.value hours, from
the ticket's creation). On the calendar clock that length is the value itself; on a business clock it
is the schedule's open time inside the same interval: C(end) - C(start), where C is the open time
before an instant (business_open_us, migration 0012: one index lookup in schedule_spans). Bucketing
does not change, a measurement stays in the bucket of its event; only its value is counted anew.

A metric that is not a duration (a count, a score) reads the same on every clock, so its reads drop
the clock (`for_metric`) and share the calendar answers and rollups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from webapp.analytics.metrics import Metric
from webapp.analytics.window import QueryError
from webapp.clocks.schedules import default_schedule, get_schedule
from webapp.core.vocabulary import CLOCKS

# The cache family of every answer counted on a schedule's clock: bumped by each schedule change.
FAMILY = "schedules"


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
        return self if metric.duration else CALENDAR

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

    On a business clock the schedule is the bound parameter :schedule_id; the interval's start is
    its end less e.value hours, exact to the microsecond.
    """
    if not clock.business or not metric.duration:
        return metric.value_sql or "CAST(NULL AS double precision)"
    return business_hours_sql("e.occurred_at - e.value * interval '1 hour'", "e.occurred_at")


def business_hours_sql(start: str, end: str, schedule: str = ":schedule_id") -> str:
    """SQL for the open hours of the schedule `schedule` in [start, end), as double precision."""
    return (
        f"CAST(business_open_us(CAST({schedule} AS bigint), {end})"
        f" - business_open_us(CAST({schedule} AS bigint), {start}) AS double precision) / 3.6e9"
    )
