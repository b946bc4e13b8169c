"""Request and response models of the export routes: a request model per dataset, told apart by `dataset`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel

from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.metrics import METRICS
from webapp.api.schemas.analytics import AggregationFields
from webapp.api.schemas.common import Strict
from webapp.api.schemas.fields import (
    FILTERS_DOC,
    ClockFields,
    FilterObject,
    Granularity,
    MetricName,
    RangeFields,
)
from webapp.core.vocabulary import EXPORT_FORMATS
from webapp.exports.spec import TICKET_COLUMNS, ExportSpec, SeriesQuery, TicketQuery

ExportFormat = Literal[EXPORT_FORMATS]  # type: ignore[valid-type]
TicketColumn = Literal[tuple(TICKET_COLUMNS)]  # type: ignore[valid-type]


class TicketsExportQuery(RangeFields):
    """Tickets created in the range that match the filters."""

    filters: FilterObject = Field(default_factory=dict, description=FILTERS_DOC)
    columns: list[TicketColumn] | None = Field(default=None, description="default: every column")


class TimeSeriesExportQuery(RangeFields, ClockFields):
    """One metric per bucket, as GET /analytics/time-series/{metric} answers it."""

    metric: MetricName
    granularity: Granularity = "daily"
    filters: FilterObject = Field(default_factory=dict, description=FILTERS_DOC)


class TicketsExport(Strict):
    format: ExportFormat
    dataset: Literal["tickets"]
    query: TicketsExportQuery = Field(default_factory=TicketsExportQuery)

    def spec(self, *, default_tz: str, now: datetime, clock: Clock = CALENDAR) -> ExportSpec:
        """The export asked for, its window canonical (tickets have no clock)."""
        q = self.query
        columns = tuple(dict.fromkeys(q.columns or TICKET_COLUMNS))
        return ExportSpec.of(
            self.format, TicketQuery(columns, q.window(default_tz=default_tz, now=now), q.filters)
        )


class TimeSeriesExport(Strict):
    format: ExportFormat
    dataset: Literal["time-series"]
    query: TimeSeriesExportQuery

    def spec(self, *, default_tz: str, now: datetime, clock: Clock = CALENDAR) -> ExportSpec:
        """The export asked for, its window canonical (and its buckets counted before any job), its
        durations on `clock` (resolved from the query's clock and schedule_id by the caller)."""
        q = self.query
        window = q.window(default_tz=default_tz, now=now, granularity=q.granularity)
        metric_clock = clock.for_metric(METRICS[q.metric])
        return ExportSpec.of(self.format, SeriesQuery(q.metric, window, q.filters, metric_clock))


class AggregationsExport(Strict):
    format: ExportFormat
    dataset: Literal["aggregations"]
    query: AggregationFields = Field(description="the body of POST /analytics/aggregations, without async")

    def spec(self, *, default_tz: str, now: datetime, clock: Clock = CALENDAR) -> ExportSpec:
        """The export asked for: the aggregation, its window canonical, on `clock`."""
        return ExportSpec.of(self.format, self.query.query(default_tz=default_tz, now=now, clock=clock))


DatasetExport = TicketsExport | TimeSeriesExport | AggregationsExport


class ExportRequest(RootModel[Annotated[DatasetExport, Field(discriminator="dataset")]]):
    """An export request: format, dataset, and the query of that dataset."""


# Each dataset's request model, by the dataset it names.
EXPORT_REQUESTS: dict[str, type[DatasetExport]] = {
    get_args(model.model_fields["dataset"].annotation)[0]: model for model in get_args(DatasetExport)
}


class ExportMode(Strict):
    mode: Literal["async", "sync"] = Field(
        default="async", description="sync streams a small export in the response, up to a row cap"
    )


class DownloadQuery(BaseModel):
    """A link's query: its token. Other parameters are ignored, as mail clients and link trackers
    add their own (utm_source=...) to a link they pass on."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, max_length=1000, description="the signed token of the download_url")


class ExportInfo(BaseModel):
    id: str
    job_id: str
    format: ExportFormat
    filename: str
    content_type: str
    rows: int
    bytes: int
    sha256: str
    created_at: datetime
    expires_at: datetime = Field(description="when download_url stops working, as in the job's result")
    download_url: str
    link_expires_at: datetime = Field(description="the same instant as expires_at (an earlier name)")
    file_expires_at: datetime = Field(description="when the file itself is deleted (EXPORT_RETENTION_DAYS)")
