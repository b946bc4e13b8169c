"""The metric reads (time series, distributions, dashboard, performance, aggregations, snapshots) as
objects: each says its cache key, the families it depends on, how it may be answered, and computes
its answer. readers.read answers any of them through the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from webapp.analytics import cost, current, provenance, queries, reports, snapshots
from webapp.analytics.aggregations import AggregationQuery, run_aggregation
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.metrics import METRICS
from webapp.analytics.window import Window
from webapp.core.filters import Filters
from webapp.core.timeutil import utcnow

# Answers that depend on the clock (SLA pending turns breached with no event) are cached briefly.
CLOCK_TTL_SECONDS = 60


def ranged(window: Window, filters: Filters, exact: bool) -> dict[str, Any]:
    # `exact` only when asked, so the keys of ordinary requests stay as they were.
    return {**window.params(), "filters": filters, **({"exact": True} if exact else {})}


def current_filters(filters: Filters) -> set[str]:
    """The families of the dimensions a read filters on by the tickets' current values: a change of
    any of them moves a ticket in or out of the answer (dist_<field> is bumped when <field> changes)."""
    return {f"dist_{name}" for name in filters}


@dataclass(frozen=True)
class TimeSeriesRead:
    """One metric per bucket of the window, with a summary."""

    route: ClassVar[str] = "time_series"
    ttl: ClassVar[int | None] = None
    metric: str
    window: Window
    filters: Filters
    exact: bool = False
    clock: Clock = CALENDAR

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "metric": self.metric,
            **ranged(self.window, self.filters, self.exact),
            **self.clock.params(),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TimeSeriesRead:
        return cls(
            p["metric"], Window.from_params(p), p["filters"], bool(p.get("exact")), Clock.from_params(p)
        )

    def families(self) -> set[str]:
        return set(METRICS[self.metric].families) | self.clock.families()

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions(rollups=not self.exact)

    def compute(self, session: Session, org_id: int) -> Any:
        window = self.window
        return queries.time_series(
            session,
            org_id=org_id,
            metric=self.metric,
            buckets=window.buckets(),
            start=window.start,
            end=window.end,
            filters=self.filters,
            clock=self.clock,
        )


@dataclass(frozen=True)
class DistributionRead:
    """Current values of one field over the tickets created in the window."""

    route: ClassVar[str] = "distribution"
    ttl: ClassVar[int | None] = None
    field: str
    window: Window
    filters: Filters
    exact: bool = False
    # Checked once the values are known (not part of the key: the answer is the same).
    max_cells: int | None = None

    def params(self) -> dict[str, Any]:
        return {"route": self.route, "field": self.field, **ranged(self.window, self.filters, self.exact)}

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> DistributionRead:
        return cls(p["field"], Window.from_params(p), p["filters"], bool(p.get("exact")))

    def families(self) -> set[str]:
        return {f"dist_{self.field}"} | current_filters(self.filters)

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions(rollups=not self.exact)

    def compute(self, session: Session, org_id: int) -> Any:
        answer = current.distribution(
            session,
            org_id=org_id,
            field=self.field,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
        )
        cost.check_rows(len(answer["values"]), cost.DISTRIBUTION_VALUE_STATISTICS, 1, self.max_cells)
        return answer


@dataclass(frozen=True)
class DashboardRead:
    """KPIs of the window against the period before it, backlog, daily volume, mix and SLA."""

    route: ClassVar[str] = "dashboard"
    ttl: ClassVar[int | None] = CLOCK_TTL_SECONDS
    window: Window
    filters: Filters
    targets: dict[str, dict[str, float]]
    exact: bool = False
    clock: Clock = CALENDAR

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "previous_start": self.window.previous_start().isoformat(),
            "targets": self.targets,
            **ranged(self.window, self.filters, self.exact),
            **self.clock.params(),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> DashboardRead:
        return cls(
            Window.from_params(p), p["filters"], p["targets"], bool(p.get("exact")), Clock.from_params(p)
        )

    def families(self) -> set[str]:
        return set(reports.DASHBOARD_FAMILIES | reports.CLOCK_FAMILIES) | current_filters(self.filters)

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions(rollups=not self.exact)

    def compute(self, session: Session, org_id: int) -> Any:
        return reports.dashboard(
            session,
            org_id=org_id,
            window=self.window,
            filters=self.filters,
            targets=self.targets,
            now=utcnow(),
            clock=self.clock,
        )


@dataclass(frozen=True)
class PerformanceRead:
    """Response and resolution time percentiles and SLA compliance over the window."""

    route: ClassVar[str] = "performance"
    ttl: ClassVar[int | None] = CLOCK_TTL_SECONDS
    window: Window
    filters: Filters
    targets: dict[str, dict[str, float]]
    exact: bool = False
    approximate_above: int | None = None
    clock: Clock = CALENDAR
    group_by: str | None = None
    # Checked once the groups are known (not part of the key: the answer is the same).
    max_cells: int | None = None

    def params(self) -> dict[str, Any]:
        params = {
            "route": self.route,
            "targets": self.targets,
            **ranged(self.window, self.filters, self.exact),
            **self.clock.params(),
        }
        if self.approximate_above is not None and not self.exact:
            params["approximate_above"] = self.approximate_above
        if self.group_by is not None:
            params["group_by"] = self.group_by
        return params

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> PerformanceRead:
        return cls(
            Window.from_params(p),
            p["filters"],
            p["targets"],
            bool(p.get("exact")),
            p.get("approximate_above"),
            Clock.from_params(p),
            p.get("group_by"),
        )

    def families(self) -> set[str]:
        # SLA groups read the tickets' current values: a change of the grouped dimension moves them.
        grouped = {f"dist_{self.group_by}"} if self.group_by else set()
        return (
            set(reports.PERFORMANCE_FAMILIES | reports.CLOCK_FAMILIES)
            | current_filters(self.filters)
            | grouped
        )

    def options(self) -> provenance.ReadOptions:
        if self.exact:
            return provenance.ReadOptions(rollups=False)
        return provenance.ReadOptions(approximate_above=self.approximate_above)

    def compute(self, session: Session, org_id: int) -> Any:
        answer = reports.performance(
            session,
            org_id=org_id,
            window=self.window,
            filters=self.filters,
            now=utcnow(),
            clock=self.clock,
            group_by=self.group_by,
        )
        groups = len(answer["sla"].get("groups") or ())
        cost.check_rows(groups, cost.PERFORMANCE_GROUP_STATISTICS, 3, self.max_cells)
        return answer


@dataclass(frozen=True)
class AggregationRead:
    """An aggregation answered at once (a heavy or async one runs as a job instead)."""

    route: ClassVar[str] = "aggregations"
    ttl: ClassVar[int | None] = None
    query: AggregationQuery
    # Checked again once the groups are known (not part of the key: the answer is the same).
    max_cells: int | None = None

    def params(self) -> dict[str, Any]:
        return {"route": self.route, "query": self.query.params()}

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> AggregationRead:
        return cls(AggregationQuery.from_params(p["query"]))

    def families(self) -> set[str]:
        return self.query.families()

    def options(self) -> provenance.ReadOptions:
        return self.query.options()

    def compute(self, session: Session, org_id: int) -> Any:
        return run_aggregation(session, org_id=org_id, query=self.query, max_cells=self.max_cells)


@dataclass(frozen=True)
class SnapshotsRead:
    """Stored snapshots of one type whose period starts in [first, last)."""

    route: ClassVar[str] = "snapshots"
    ttl: ClassVar[int | None] = None
    snapshot_type: str
    first: date
    last: date

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "type": self.snapshot_type,
            "start": self.first.isoformat(),
            "end": self.last.isoformat(),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> SnapshotsRead:
        return cls(p["type"], date.fromisoformat(p["start"]), date.fromisoformat(p["end"]))

    def families(self) -> set[str]:
        # A write into a stored period makes it stale, and the listing computes it afresh.
        return {"snapshots"} | reports.DASHBOARD_FAMILIES | reports.CLOCK_FAMILIES

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions()

    def compute(self, session: Session, org_id: int) -> Any:
        return snapshots.list_snapshots(
            session, org_id=org_id, snapshot_type=self.snapshot_type, start=self.first, end=self.last
        )
