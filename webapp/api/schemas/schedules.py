"""Request and response models of the business-hours schedule routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from webapp.api.schemas.common import Strict
from webapp.clocks.schedules import MAX_HOLIDAYS, MAX_INTERVALS, MAX_NAME
from webapp.core.patch_schema import patch_body

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME = "wall-clock time HH:MM in the schedule's zone"


class IntervalIn(Strict):
    day: Day
    start: str = Field(max_length=5, pattern=r"^[0-9]{2}:[0-9]{2}$", description=_TIME + " (00:00 to 23:59)")
    end: str = Field(
        max_length=5, pattern=r"^[0-9]{2}:[0-9]{2}$", description=_TIME + ", after start; 24:00 is midnight"
    )


class HolidayIn(Strict):
    date: str = Field(max_length=10, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD")
    name: str = Field(default="", max_length=MAX_NAME)


class ScheduleCreate(Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")
    intervals: list[IntervalIn] = Field(min_length=1, max_length=MAX_INTERVALS)
    holidays: list[HolidayIn] = Field(default_factory=list, max_length=MAX_HOLIDAYS)
    default: StrictBool = Field(default=False, description="make this the organization's default schedule")


class ScheduleUpdate(Strict):
    model_config = ConfigDict(json_schema_extra=patch_body())

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    intervals: list[IntervalIn] | None = Field(default=None, min_length=1, max_length=MAX_INTERVALS)
    holidays: list[HolidayIn] | None = Field(default=None, max_length=MAX_HOLIDAYS)
    default: StrictBool | None = Field(
        default=None, description="true makes this the default; the default cannot be unset (409)"
    )


class IntervalOut(BaseModel):
    day: Day
    start: str
    end: str


class HolidayOut(BaseModel):
    date: str
    name: str


class Schedule(BaseModel):
    id: int
    name: str
    timezone: str
    intervals: list[IntervalOut]
    holidays: list[HolidayOut]
    default: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[Schedule]
