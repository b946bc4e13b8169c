"""Request and response models of the analytics routes (they validate requests and describe OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from webapp.api.schemas.common import Strict

Granularity = Literal["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"]
MetricName = Literal["ticket_count", "response_time", "resolution_time", "sentiment_score"]
Dimension = Literal["status", "priority", "channel", "category", "assigned_to"]
SnapshotType = Literal["daily", "weekly", "monthly"]

_START = (
    "ISO 8601 date or datetime; a date is local midnight, a naive time local wall-clock "
    "(default: 30 days before end)"
)
_END = "exclusive end, as start (default: the end of today in the time zone)"
_TZ = "IANA time zone buckets and dates are read in (default: the organization's)"
_LIST = "comma-separated values; for assigned_to, `null` means unassigned"
_EXACT = (
    "compute from raw events only: no rollups, and percentiles exact whatever the number of "
    "measurements (default false: rollups for closed hours, sketch percentiles above a size)"
)


class RangeQuery(Strict):
    """The range, time zone and dimension filters common to the analytics routes."""

    start: str | None = Field(default=None, max_length=64, description=_START)
    end: str | None = Field(default=None, max_length=64, description=_END)
    tz: str | None = Field(default=None, max_length=64, description=_TZ)
    status: str | None = Field(default=None, description=_LIST)
    priority: str | None = Field(default=None, description=_LIST)
    channel: str | None = Field(default=None, description=_LIST)
    category: str | None = Field(default=None, description=_LIST)
    assigned_to: str | None = Field(default=None, description=_LIST)
    exact: bool = Field(default=False, description=_EXACT)


class TimeSeriesQuery(RangeQuery):
    granularity: Granularity = "daily"


class DistributionQuery(RangeQuery):
    pass


class PerformanceQuery(RangeQuery):
    pass


class DashboardQuery(RangeQuery):
    period: Literal["7d", "30d", "90d"] | None = Field(
        default=None, description="the last 7, 30 or 90 local days up to the end of today (instead of start)"
    )


class SnapshotQuery(Strict):
    type: SnapshotType = "daily"
    start: str | None = Field(default=None, max_length=64, description="first period date, ISO 8601")
    end: str | None = Field(default=None, max_length=64, description="exclusive last period date, ISO 8601")


class SnapshotRequest(Strict):
    type: SnapshotType
    date: str = Field(max_length=10, description="a date inside the period, ISO 8601 (YYYY-MM-DD)")


class AggregationRequest(Strict):
    metrics: list[MetricName] = Field(min_length=1, max_length=4)
    group_by: list[Dimension] = Field(default_factory=list, max_length=5)
    filters: dict[str, str | list[str | None]] = Field(
        default_factory=dict,
        description="dimension -> value list (or comma-separated string); null = unassigned",
    )
    start: str | None = Field(default=None, max_length=64, description=_START)
    end: str | None = Field(default=None, max_length=64, description=_END)
    tz: str | None = Field(default=None, max_length=64, description=_TZ)
    granularity: Granularity | None = None
    percentiles: list[StrictInt] | None = Field(
        default=None,
        max_length=20,
        description=(
            "each 1..99, linearly interpolated; default [50, 95, 99]. Exact up to a configured number "
            "of measurements, above it merged from rollup sketches within 1% (meta.approximate)"
        ),
    )
    # Strict in a JSON body: "yes" or 1 is not a boolean, "50" not a percentile.
    exact: StrictBool = Field(default=False, description=_EXACT)
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
