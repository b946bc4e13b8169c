"""Request and response models of the analytics routes (they validate requests and describe OpenAPI).

Their word lists come from the vocabulary and the metric registry, and filters are parsed as they
are validated, so a request that passes is canonical; its methods turn it into the domain's query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, create_model

from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.sla_compliance import GROUPS
from webapp.api.schemas.common import Strict
from webapp.api.schemas.fields import (
    FILTER_PARAM_DOC,
    FILTERS_DOC,
    ClockFields,
    ClockName,
    Dimension,
    FilterObject,
    Granularity,
    IsoDate,
    MetricName,
    Percentile,
    Period,
    RangeFields,
    SnapshotType,
    filter_param,
    percentiles_in_range,
)
from webapp.core.filters import Filters
from webapp.core.vocabulary import DIMENSIONS
from webapp.tickets.fields import Status

SlaGroup = Literal[GROUPS]  # type: ignore[valid-type]
_EXACT = (
    "compute from raw events only: no rollups, and percentiles exact whatever the number of "
    "measurements (default false: rollups for closed hours, sketch percentiles above a size)"
)


# The range, time zone and one filter parameter per dimension.
_Filtered: type[RangeFields] = create_model(  # type: ignore[call-overload]
    "_Filtered",
    __base__=RangeFields,
    **{name: (filter_param(name), Field(default=None, description=FILTER_PARAM_DOC)) for name in DIMENSIONS},
)


class RangeQuery(_Filtered):  # type: ignore[valid-type,misc]
    """The range, time zone and dimension filters common to the analytics routes."""

    exact: bool = Field(default=False, description=_EXACT)

    @property
    def filters(self) -> Filters:
        """The filters given, dimension -> values."""
        return {name: values for name in DIMENSIONS if (values := getattr(self, name)) is not None}


class TimeSeriesQuery(RangeQuery, ClockFields):
    granularity: Granularity = "daily"


class DistributionQuery(RangeQuery):
    pass


class PerformanceQuery(RangeQuery, ClockFields):
    group_by: SlaGroup | None = Field(
        default=None, description="SLA compliance also per value of this field (sla.groups)"
    )


class SupportQuery(RangeQuery, ClockFields):
    pass


class TimeInStatusQuery(SupportQuery):
    pass


class AgentsQuery(SupportQuery):
    min_tickets: int = Field(
        default=5, ge=1, le=1_000_000, description="fewest solved tickets an agent needs"
    )


class StatusTime(BaseModel):
    status: Status
    tickets: int = Field(description="tickets that spent any time in the status")
    total_hours: float
    avg_hours: float | None
    p50: float | None
    p90: float | None


class ClockEcho(BaseModel):
    clock: ClockName = Field(default="calendar", description="what the durations are counted in")
    schedule_id: int | None = Field(default=None, description="the schedule of clock=business")


class TimeInStatus(ClockEcho):
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    statuses: list[StatusTime]
    meta: Meta


class AgentRow(BaseModel):
    agent: str
    solved: int
    first_reply_p50: float | None
    resolution_p50: float | None
    sla_compliance_pct: float | None
    csat_pct: float | None
    one_touch_pct: float | None
    reopen_rate: float | None


class Agents(ClockEcho):
    timezone: str
    start: str
    end: str
    filters: dict[str, list[str | None]]
    min_tickets: int
    agents: list[AgentRow]
    meta: Meta


class DashboardQuery(RangeQuery, ClockFields):
    period: Period | None = Field(
        default=None, description="the last 7, 30 or 90 local days up to the end of today (instead of start)"
    )


class SnapshotQuery(Strict):
    type: SnapshotType = "daily"
    start: str | None = Field(default=None, max_length=64, description="first period date, ISO 8601")
    end: str | None = Field(default=None, max_length=64, description="exclusive last period date, ISO 8601")


class SnapshotRequest(Strict):
    type: SnapshotType
    date: IsoDate = Field(description="a date inside the period, ISO 8601 (YYYY-MM-DD)")


class AggregationFields(RangeFields, ClockFields):
    """What to aggregate: the body of POST /analytics/aggregations without `async`."""

    metrics: list[MetricName] = Field(min_length=1, max_length=4)
    group_by: list[Dimension] = Field(default_factory=list, max_length=5)
    filters: FilterObject = Field(default_factory=dict, description=FILTERS_DOC)
    granularity: Granularity | None = None
    percentiles: Annotated[list[Percentile], AfterValidator(percentiles_in_range)] | None = Field(
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
        self,
        *,
        default_tz: str,
        now: datetime,
        approximate_above: int | None = None,
        clock: Clock = CALENDAR,
    ) -> AggregationQuery:
        """The aggregation asked for, its window canonical (see canonical_window), on `clock` (resolved
        from clock and schedule_id by the caller)."""
        return AggregationQuery.of(
            metrics=self.metrics,
            group_by=self.group_by,
            window=self.window(default_tz=default_tz, now=now, granularity=self.granularity),
            filters=self.filters,
            percentiles=self.percentiles,
            exact=self.exact,
            approximate_above=approximate_above,
            clock=clock,
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


class TimeSeries(ClockEcho):
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
    """count for the counting metrics (ticket_count, solved, reopens); count and value for backlog
    (both the tickets in it) and net_flow (created plus solved, created minus solved); count and avg
    (the percentage) for csat and one_touch; count, avg, min, max and one pNN per requested percentile
    otherwise."""

    model_config = ConfigDict(extra="allow")

    count: int
    value: float | None = None
    avg: float | None = None
    min: float | None = None
    max: float | None = None


class AggregationRow(BaseModel):
    """One group (and bucket) with one Stats object per requested metric, keyed by the metric's name."""

    model_config = ConfigDict(extra="allow")

    group: dict[str, str | None]
    bucket: str | None = None


class Aggregation(ClockEcho):
    metrics: list[MetricName]
    # Each metric's unit, as a time series names it (tickets, hours, score, percent).
    units: dict[MetricName, str] = Field(default_factory=dict)
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
    achieved: int | None = Field(default=None, description="the same as met, in the SLA policy's word")
    breached: int
    pending: int
    compliance: float | None = Field(description="achieved / (achieved + breached); null when both are 0")
    compliance_pct: float | None = Field(
        default=None, description="the same as a percentage (0-100), as every other percentage is"
    )


class SlaOutcomes(BaseModel):
    first_response: Outcome = Field(description="the policy's first_reply target")
    resolution: Outcome
    next_reply: Outcome | None = Field(
        default=None,
        description=(
            "every ticket of a priority with a next_reply target; one without a customer reply after an"
            " agent reply is achieved (its GET /tickets/{id}/sla answers pairs: 0)"
        ),
    )


class SlaGroupOutcomes(SlaOutcomes):
    group: dict[str, str | None]


class Sla(BaseModel):
    overall: SlaOutcomes
    by_priority: dict[str, SlaOutcomes]
    next_reply: Outcome | None = None
    policy_clock: ClockName | None = Field(default=None, description="the SLA policy's clock")
    schedule_id: int | None = Field(default=None, description="the SLA policy's schedule")
    groups: list[SlaGroupOutcomes] | None = Field(default=None, description="per value of group_by")


class CountPoint(BaseModel):
    bucket: str
    count: int


class Dashboard(ClockEcho):
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
    backlog_series: list[CountPoint] = Field(
        default_factory=list, description="tickets in the backlog at each day's end (from the status history)"
    )
    distributions: dict[str, Distribution]
    sla: Sla
    meta: Meta


class Target(BaseModel):
    first_response_hours: float | None
    resolution_hours: float | None
    first_reply_hours: float | None = None
    next_reply_hours: float | None = None


class Performance(ClockEcho):
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
    stale: bool = Field(
        description="a later write reached the period and the listing did not compute it afresh (more "
        "than 5 such in one listing): beat's snapshot pass recomputes it within SNAPSHOT_SCHEDULE_SECONDS"
    )


class SnapshotList(BaseModel):
    type: SnapshotType
    start: str
    end: str
    items: list[Snapshot]
    meta: Meta
