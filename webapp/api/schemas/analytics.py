"""Request and response models of the analytics routes (they validate requests and describe OpenAPI).

Their word lists come from the vocabulary and the metric registry, and filters are parsed as they
are validated, so a request that passes is canonical; its methods turn it into the domain's query.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    create_model,
)

from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.buckets import DEFAULT_RANGE_DAYS
from webapp.analytics.metrics import METRICS
from webapp.analytics.window import Window, canonical_window
from webapp.api.schemas.common import Strict, refused
from webapp.core.filters import FilterError, Filters, parse_filter, parse_filter_object
from webapp.core.timeutil import EARLIEST, LATEST
from webapp.core.vocabulary import DASHBOARD_PERIODS, DIMENSIONS, GRANULARITIES, SNAPSHOT_TYPES

Granularity = Literal[GRANULARITIES]  # type: ignore[valid-type]
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]
Dimension = Literal[DIMENSIONS]  # type: ignore[valid-type]
SnapshotType = Literal[SNAPSHOT_TYPES]  # type: ignore[valid-type]
Period = Literal[tuple(DASHBOARD_PERIODS)]  # type: ignore[valid-type]

_START = (
    "ISO 8601 date or datetime; a date is local midnight, a naive time local wall-clock "
    "(default: 30 days before end)"
)
_END = "exclusive end, as start (default: the end of today in the time zone)"
_TZ = "IANA time zone buckets and dates are read in (default: the organization's)"
_LIST = "comma-separated values; for assigned_to, `null` means unassigned"
FILTERS_DOC = "dimension -> value list (or comma-separated string); null = unassigned"
_EXACT = (
    "compute from raw events only: no rollups, and percentiles exact whatever the number of "
    "measurements (default false: rollups for closed hours, sketch percentiles above a size)"
)
_VALUES = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    ]
}


_NULLABLE_TEXT = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def _filter_param(name: str) -> Any:
    """The query parameter filtering on dimension `name`, parsed into its values."""

    def parse(raw: Any) -> list[str | None]:
        try:
            return parse_filter(name, raw)
        except FilterError as exc:
            raise refused(str(exc), exc.field) from exc

    return Annotated[list[str | None] | None, PlainValidator(parse), WithJsonSchema(_NULLABLE_TEXT)]


def _filter_object(raw: Any) -> Filters:
    if not isinstance(raw, dict):
        raise refused('filters must be an object, e.g. {"status": ["open"]}', "filters")
    try:
        return parse_filter_object(raw)
    except FilterError as exc:
        raise refused(str(exc), exc.field) from exc


FilterObject = Annotated[
    Filters,
    PlainValidator(_filter_object),
    WithJsonSchema(
        {"type": "object", "properties": dict.fromkeys(DIMENSIONS, _VALUES), "additionalProperties": False}
    ),
]


def _percentiles(values: list[int]) -> list[int]:
    if not all(1 <= p <= 99 for p in values):
        raise refused("percentiles must be integers from 1 to 99, e.g. [50, 95, 99]", "percentiles")
    return values


Percentile = Annotated[StrictInt, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 99})]


class RangeFields(Strict):
    """The range and the time zone it is read in, as a request gives them."""

    start: str | None = Field(default=None, max_length=64, description=_START)
    end: str | None = Field(default=None, max_length=64, description=_END)
    tz: str | None = Field(default=None, max_length=64, description=_TZ)

    def window(
        self,
        *,
        default_tz: str,
        now: datetime,
        granularity: str | None = None,
        days: int = DEFAULT_RANGE_DAYS,
    ) -> Window:
        """The window the request asks for (see canonical_window)."""
        return canonical_window(
            self.start,
            self.end,
            tz=self.tz,
            default_tz=default_tz,
            now=now,
            granularity=granularity,
            days=days,
        )


# The range, time zone and one filter parameter per dimension.
_Filtered: type[RangeFields] = create_model(  # type: ignore[call-overload]
    "_Filtered",
    __base__=RangeFields,
    **{name: (_filter_param(name), Field(default=None, description=_LIST)) for name in DIMENSIONS},
)


class RangeQuery(_Filtered):  # type: ignore[valid-type,misc]
    """The range, time zone and dimension filters common to the analytics routes."""

    exact: bool = Field(default=False, description=_EXACT)

    @property
    def filters(self) -> Filters:
        """The filters given, dimension -> values."""
        return {name: values for name in DIMENSIONS if (values := getattr(self, name)) is not None}


class TimeSeriesQuery(RangeQuery):
    granularity: Granularity = "daily"


class DistributionQuery(RangeQuery):
    pass


class PerformanceQuery(RangeQuery):
    pass


class DashboardQuery(RangeQuery):
    period: Period | None = Field(
        default=None, description="the last 7, 30 or 90 local days up to the end of today (instead of start)"
    )


class SnapshotQuery(Strict):
    type: SnapshotType = "daily"
    start: str | None = Field(default=None, max_length=64, description="first period date, ISO 8601")
    end: str | None = Field(default=None, max_length=64, description="exclusive last period date, ISO 8601")


def _iso_date(raw: Any) -> date:
    text = raw if isinstance(raw, str) else repr(raw)
    try:
        day = date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise refused(f"date {text[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)", "date")
    if not EARLIEST.year <= day.year < LATEST.year:
        raise refused(f"date {raw} is outside the years 1900 to 2199 this platform measures", "date")
    return day


IsoDate = Annotated[
    date, PlainValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date", "maxLength": 10})
]


class SnapshotRequest(Strict):
    type: SnapshotType
    date: IsoDate = Field(description="a date inside the period, ISO 8601 (YYYY-MM-DD)")


class AggregationFields(RangeFields):
    """What to aggregate: the body of POST /analytics/aggregations without `async`."""

    metrics: list[MetricName] = Field(min_length=1, max_length=4)
    group_by: list[Dimension] = Field(default_factory=list, max_length=5)
    filters: FilterObject = Field(default_factory=dict, description=FILTERS_DOC)
    granularity: Granularity | None = None
    percentiles: Annotated[list[Percentile], AfterValidator(_percentiles)] | None = Field(
        default=None,
        max_length=20,
        description=(
            "each 1..99, linearly interpolated; default [50, 95, 99]. Exact up to a configured number "
            "of measurements, above it merged from rollup sketches within 1% (meta.approximate)"
        ),
    )
    # Strict in a JSON body: "yes" or 1 is not a boolean, "50" not a percentile.
    exact: StrictBool = Field(default=False, description=_EXACT)

    def query(
        self, *, default_tz: str, now: datetime, approximate_above: int | None = None
    ) -> AggregationQuery:
        """The aggregation asked for, its window canonical (see canonical_window)."""
        return AggregationQuery.of(
            metrics=self.metrics,
            group_by=self.group_by,
            window=self.window(default_tz=default_tz, now=now, granularity=self.granularity),
            filters=self.filters,
            percentiles=self.percentiles,
            exact=self.exact,
            approximate_above=approximate_above,
        )


class AggregationRequest(AggregationFields):
    async_: StrictBool = Field(default=False, alias="async", description="run as a job and answer 202")

    model_config = ConfigDict(extra="forbid")


# --- responses --------------------------------------------------------------


class Meta(BaseModel):
    cache: Literal["hit", "miss", "bypass"]
    source: Literal["raw", "rollup", "mixed", "snapshot"] = Field(
        description="rollup: hourly rollups only; raw: raw events only; mixed: rollups for closed hours "
        "plus raw events for the rest"
    )
    approximate: bool = Field(
        default=False, description="true when percentiles were merged from sketches (within 1% of exact)"
    )
    computed_at: str


class Point(BaseModel):
    bucket: str = Field(description="bucket start, ISO 8601 with the zone's offset")
    value: float | None
    count: int
    min: float | None
    max: float | None


class Summary(BaseModel):
    total_count: int
    avg: float | None
    min: float | None
    max: float | None


class TimeSeries(BaseModel):
    metric: MetricName
    unit: str
    granularity: Granularity
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    points: list[Point]
    summary: Summary
    meta: Meta


class Stats(BaseModel):
    """count for ticket_count; count, avg, min, max and one pNN per requested percentile otherwise."""

    model_config = ConfigDict(extra="allow")

    count: int
    avg: float | None = None
    min: float | None = None
    max: float | None = None


class AggregationRow(BaseModel):
    """One group (and bucket) with one Stats object per requested metric, keyed by the metric's name."""

    model_config = ConfigDict(extra="allow")

    group: dict[str, str | None]
    bucket: str | None = None


class Aggregation(BaseModel):
    metrics: list[MetricName]
    group_by: list[Dimension]
    granularity: Granularity | None
    percentiles: list[int]
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    rows: list[AggregationRow]
    meta: Meta


class DistributionValue(BaseModel):
    value: str | None
    count: int
    share: float | None


class Distribution(BaseModel):
    field: Dimension
    total: int
    values: list[DistributionValue]


class DistributionResponse(Distribution):
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    meta: Meta


class Kpi(BaseModel):
    value: float | None
    previous: float | None
    change_pct: float | None = Field(
        description="percent change against previous; null when previous is 0 or null"
    )


class Backlog(BaseModel):
    count: int
    by_status: dict[str, int]


class Outcome(BaseModel):
    met: int
    breached: int
    pending: int
    compliance: float | None


class SlaOutcomes(BaseModel):
    first_response: Outcome
    resolution: Outcome


class Sla(BaseModel):
    overall: SlaOutcomes
    by_priority: dict[str, SlaOutcomes]


class CountPoint(BaseModel):
    bucket: str
    count: int


class Dashboard(BaseModel):
    period: str | None
    timezone: str
    start: str
    end: str
    previous_start: str
    previous_end: str
    filters: dict[str, list[str | None]]
    kpis: dict[str, Kpi]
    backlog: Backlog
    ticket_count_series: list[CountPoint]
    distributions: dict[str, Distribution]
    sla: Sla
    meta: Meta


class Target(BaseModel):
    first_response_hours: float
    resolution_hours: float


class Performance(BaseModel):
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    response_time: Stats
    resolution_time: Stats
    sla: Sla
    targets: dict[str, Target]
    meta: Meta


class Snapshot(BaseModel):
    snapshot_type: SnapshotType
    snapshot_date: str
    data: dict[str, Any]
    definition_version: int
    computed_at: str


class SnapshotList(BaseModel):
    type: SnapshotType
    start: str
    end: str
    items: list[Snapshot]
    meta: Meta
