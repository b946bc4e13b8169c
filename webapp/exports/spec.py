"""What an export is: a format, a dataset and the query that picks its rows, as objects and as job params."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from webapp.analytics import aggregations, cost
from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.window import Window
from webapp.core.filters import Filters

Kind = Literal["int", "float", "text", "timestamp"]

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# The media types alone (without parameters), as the API document lists them.
MEDIA_TYPES = tuple(sorted({value.split(";")[0] for value in CONTENT_TYPES.values()}))

# The columns of the tickets dataset, in their default order, and how each is written.
TICKET_COLUMNS: dict[str, Kind] = {
    "id": "int",
    "subject": "text",
    "status": "text",
    "priority": "text",
    "channel": "text",
    "category": "text",
    "assigned_to": "text",
    "sentiment_score": "float",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "first_response_at": "timestamp",
    "resolved_at": "timestamp",
    "reopen_count": "int",
}


@dataclass(frozen=True)
class TicketQuery:
    """Tickets created in the window that match the filters, with these columns."""

    columns: tuple[str, ...]
    window: Window
    filters: Filters

    def params(self) -> dict[str, Any]:
        return {"columns": list(self.columns), **self.window.params(), "filters": self.filters}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TicketQuery:
        return cls(tuple(params["columns"]), Window.from_params(params), params["filters"])


@dataclass(frozen=True)
class SeriesQuery:
    """One metric per bucket of the window (which has a granularity)."""

    metric: str
    window: Window
    filters: Filters
    clock: Clock = CALENDAR

    def params(self) -> dict[str, Any]:
        return {"metric": self.metric, **self.window.params(), "filters": self.filters, **self.clock.params()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SeriesQuery:
        return cls(params["metric"], Window.from_params(params), params["filters"], Clock.from_params(params))


DatasetQuery = TicketQuery | SeriesQuery | AggregationQuery
# Each dataset and the query that picks its rows.
DATASETS: dict[str, type[TicketQuery] | type[SeriesQuery] | type[AggregationQuery]] = {
    "tickets": TicketQuery,
    "time-series": SeriesQuery,
    "aggregations": AggregationQuery,
}


@dataclass(frozen=True)
class ExportSpec:
    """One export: its format, its dataset and that dataset's query."""

    format: str
    dataset: str
    query: DatasetQuery

    @classmethod
    def of(cls, fmt: str, query: DatasetQuery) -> ExportSpec:
        """The export of `query` as `fmt`, named by the dataset that query belongs to."""
        dataset = next(name for name, kind in DATASETS.items() if isinstance(query, kind))
        return cls(fmt, dataset, query)

    def params(self) -> dict[str, Any]:
        """The export as its job's params (also what makes two requests the same job)."""
        return {"dataset": self.dataset, "format": self.format, "query": self.query.params()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExportSpec:
        """The export `params()` wrote (at the job boundary)."""
        dataset = params["dataset"]
        return cls(params["format"], dataset, DATASETS[dataset].from_params(params["query"]))

    @property
    def window(self) -> Window:
        return self.query.window

    def check_cells(self, session: Session, org_id: int, max_cells: int) -> None:
        """cost.TooCostly when the analytics answer this export writes (an aggregation, a series) would
        hold more than `max_cells` cells, before it is queued: an aggregation's free-text groups are
        counted over its range first (a job is never queued for an answer its own check would
        refuse)."""
        query = self.query
        if isinstance(query, AggregationQuery):
            aggregations.queued_estimate(session, org_id=org_id, query=query).check(max_cells)
        elif isinstance(query, SeriesQuery):
            cost.series(query.window).check(max_cells)

    def filename(self, now: datetime) -> str:
        """The file's name: the dataset and the local time it was made."""
        return f"{self.dataset}-{now.astimezone(self.window.tz):%Y%m%d-%H%M%S}.{self.format}"

    def describe(self, now: datetime) -> dict[str, Any]:
        """What an XLSX metadata sheet says of the export besides its row count."""
        tz = self.window.tz
        return {
            "dataset": self.dataset,
            "query": self.query.params(),
            "generated_at": now.astimezone(tz).isoformat(),
            "time_zone": tz.key,
        }
