"""Request and response models of the report schedule routes: an export request whose query may name
a relative range instead of start and end."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt

from webapp.api.schemas.analytics import AggregationFields
from webapp.api.schemas.common import Strict
from webapp.api.schemas.exports import (
    AggregationsExport,
    TicketsExport,
    TicketsExportQuery,
    TimeSeriesExport,
    TimeSeriesExportQuery,
)
from webapp.core.patch_schema import patch_body
from webapp.core.vocabulary import DELIVERY_STATES, REPORT_RANGES, REPORT_RUN_ANSWER_STATES, REPORT_TRIGGERS
from webapp.models.base import MAX_ID

ReportRange = Literal[REPORT_RANGES]  # type: ignore[valid-type]
_RANGE = (
    "resolved in the schedule's zone at each run, whole local days: last_7_days (before today), "
    "previous_day, previous_week (Monday to Monday), previous_month, month_to_date (to the end of "
    "today); instead of start and end"
)
_CRON = "five fields (minute hour day-of-month month day-of-week) in the schedule's zone, e.g. '0 9 * * mon'"


class TicketsReportQuery(TicketsExportQuery):
    range: ReportRange | None = Field(default=None, description=_RANGE)


class TimeSeriesReportQuery(TimeSeriesExportQuery):
    range: ReportRange | None = Field(default=None, description=_RANGE)


class AggregationsReportQuery(AggregationFields):
    range: ReportRange | None = Field(default=None, description=_RANGE)


class TicketsReport(TicketsExport):
    query: TicketsReportQuery = Field(default_factory=TicketsReportQuery)


class TimeSeriesReport(TimeSeriesExport):
    query: TimeSeriesReportQuery


class AggregationsReport(AggregationsExport):
    query: AggregationsReportQuery = Field(
        description="the body of POST /analytics/aggregations, without async"
    )


ReportExportUnion = Annotated[
    TicketsReport | TimeSeriesReport | AggregationsReport, Field(discriminator="dataset")
]


class ReportExport(RootModel[ReportExportUnion]):
    """The export each run makes: an export request, its query's range relative if it names one."""


class ReportScheduleCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200, description=_CRON)
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")
    export: ReportExportUnion
    webhook_id: StrictInt = Field(ge=1, le=MAX_ID, description="where report.ready is delivered")
    skip_if_empty: StrictBool = Field(
        default=False, description="deliver nothing when the export has no rows"
    )
    enabled: StrictBool = True


class ReportScheduleUpdate(Strict):
    model_config = ConfigDict(json_schema_extra=patch_body())

    name: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=_CRON)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    export: ReportExportUnion | None = None
    webhook_id: StrictInt | None = Field(default=None, ge=1, le=MAX_ID)
    skip_if_empty: StrictBool | None = None
    enabled: StrictBool | None = None


class ReportRunInfo(BaseModel):
    job_id: str = Field(description="the run's export job")
    trigger: Literal[REPORT_TRIGGERS]  # type: ignore[valid-type]
    state: Literal[REPORT_RUN_ANSWER_STATES] = Field(  # type: ignore[valid-type]
        description=(
            "running: the export is being made; delivering: report.ready is queued or being retried;"
            " delivered: the receiver answered 2xx; skipped: empty, with skip_if_empty; failed: the"
            " export failed, the webhook was disabled or deleted, or every retry of the delivery failed"
        )
    )
    range_start: datetime
    range_end: datetime
    delivery_id: str | None
    delivery_state: Literal[DELIVERY_STATES] | None = Field(  # type: ignore[valid-type]
        default=None, description="the report.ready delivery's state (see GET /webhooks/{id}/deliveries)"
    )
    error: str | None
    created_at: datetime


class ReportSchedule(BaseModel):
    id: int
    name: str
    cron: str
    timezone: str
    export: dict[str, Any]
    webhook_id: int | None = Field(description="null once the webhook was deleted (the schedule is disabled)")
    skip_if_empty: bool
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_run: ReportRunInfo | None
    created_at: datetime
    updated_at: datetime


class ReportScheduleList(BaseModel):
    items: list[ReportSchedule]
