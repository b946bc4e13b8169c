"""Every cached analytics read as an object: its cache key, the families it depends on, its answer.

The views build a read from the validated request and read it through the cache; the refresh job
rebuilds the organization's most requested reads from their keys (`from_params`) and recomputes them
with the same code, so both always agree. What an answer was computed from (rollups, raw events,
sketches) is cached with it, so a hit reports it too.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Protocol

import redis
from sqlalchemy.orm import Session

from webapp.analytics import agent_report, current, popular, queries, reports, snapshots, support
from webapp.analytics.aggregations import AggregationQuery, run_aggregation
from webapp.analytics.cache import Computed, Shortcuts, read_through
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.metrics import METRICS
from webapp.analytics.window import Window
from webapp.core.filters import Filters
from webapp.core.timeutil import utcnow

# Answers that depend on the clock (SLA pending turns breached with no event) are cached briefly.
CLOCK_TTL_SECONDS = 60
# Part of every cache key, so that entries stored in an older format are never read.
CACHE_FORMAT = 3


@dataclass(frozen=True)
class ReadMeta:
    """Where an answer came from: the cache's verdict, when it was computed, and from what."""

    cache: str  # hit | miss | bypass
    computed_at: str
    source: str  # rollup | raw | mixed
    approximate: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "source": self.source,
            "approximate": self.approximate,
            "computed_at": self.computed_at,
        }


class Read(Protocol):
    """One cached read: `route` names it in its key, `ttl` caps how long its answer is kept."""

    route: ClassVar[str]
    ttl: ClassVar[int | None]

    def params(self) -> dict[str, Any]: ...
    def families(self) -> set[str]: ...
    def options(self) -> queries.ReadOptions: ...
    def compute(self, session: Session, org_id: int) -> Any: ...


def _ranged(window: Window, filters: Filters, exact: bool) -> dict[str, Any]:
    # `exact` only when asked, so the keys of ordinary requests stay as they were.
    return {**window.params(), "filters": filters, **({"exact": True} if exact else {})}


def _current_filters(filters: Filters) -> set[str]:
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
            **_ranged(self.window, self.filters, self.exact),
            **self.clock.params(),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TimeSeriesRead:
        return cls(
            p["metric"], Window.from_params(p), p["filters"], bool(p.get("exact")), Clock.from_params(p)
        )

    def families(self) -> set[str]:
        return set(METRICS[self.metric].families) | self.clock.families()

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions(rollups=not self.exact)

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

    def params(self) -> dict[str, Any]:
        return {"route": self.route, "field": self.field, **_ranged(self.window, self.filters, self.exact)}

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> DistributionRead:
        return cls(p["field"], Window.from_params(p), p["filters"], bool(p.get("exact")))

    def families(self) -> set[str]:
        return {f"dist_{self.field}"} | _current_filters(self.filters)

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions(rollups=not self.exact)

    def compute(self, session: Session, org_id: int) -> Any:
        return current.distribution(
            session,
            org_id=org_id,
            field=self.field,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
        )


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
            **_ranged(self.window, self.filters, self.exact),
            **self.clock.params(),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> DashboardRead:
        return cls(
            Window.from_params(p), p["filters"], p["targets"], bool(p.get("exact")), Clock.from_params(p)
        )

    def families(self) -> set[str]:
        return set(reports.DASHBOARD_FAMILIES | reports.CLOCK_FAMILIES) | _current_filters(self.filters)

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions(rollups=not self.exact)

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

    def params(self) -> dict[str, Any]:
        params = {
            "route": self.route,
            "targets": self.targets,
            **_ranged(self.window, self.filters, self.exact),
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
        return set(reports.PERFORMANCE_FAMILIES | reports.CLOCK_FAMILIES) | _current_filters(self.filters)

    def options(self) -> queries.ReadOptions:
        if self.exact:
            return queries.ReadOptions(rollups=False)
        return queries.ReadOptions(approximate_above=self.approximate_above)

    def compute(self, session: Session, org_id: int) -> Any:
        return reports.performance(
            session,
            org_id=org_id,
            window=self.window,
            filters=self.filters,
            now=utcnow(),
            clock=self.clock,
            group_by=self.group_by,
        )


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

    def options(self) -> queries.ReadOptions:
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
        return {"snapshots"}

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions()

    def compute(self, session: Session, org_id: int) -> Any:
        return snapshots.list_snapshots(
            session, org_id=org_id, snapshot_type=self.snapshot_type, start=self.first, end=self.last
        )


@dataclass(frozen=True)
class TimeInStatusRead:
    """Hours in each unsolved status before the last solve, over the tickets last solved in the window."""

    route: ClassVar[str] = "time_in_status"
    ttl: ClassVar[int | None] = None
    window: Window
    filters: Filters
    schedule_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "schedule_id": self.schedule_id,
            **_ranged(self.window, self.filters, False),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TimeInStatusRead:
        return cls(Window.from_params(p), p["filters"], p.get("schedule_id"))

    def families(self) -> set[str]:
        return {"solves", "schedules"}

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions(rollups=False)

    def compute(self, session: Session, org_id: int) -> Any:
        queries.note_raw()
        statuses = support.time_in_status(
            session,
            org_id=org_id,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
            schedule_id=self.schedule_id,
        )
        return {"statuses": statuses}


@dataclass(frozen=True)
class AgentsRead:
    """Per assignee: solves, reply and resolution medians, SLA, csat, one-touch and reopen rates."""

    route: ClassVar[str] = "agents"
    ttl: ClassVar[int | None] = None
    window: Window
    filters: Filters
    targets: dict[str, dict[str, float]]
    min_tickets: int = 5
    schedule_id: int | None = None
    # Medians from sketches above this many solves (agent_report); None: always exact.
    approximate_above: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "targets": self.targets,
            "min_tickets": self.min_tickets,
            "schedule_id": self.schedule_id,
            "approximate_above": self.approximate_above,
            **_ranged(self.window, self.filters, False),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> AgentsRead:
        return cls(
            Window.from_params(p),
            p["filters"],
            p["targets"],
            p["min_tickets"],
            p.get("schedule_id"),
            p.get("approximate_above"),
        )

    def families(self) -> set[str]:
        return {"solves", "satisfaction", "response", "sla", "schedules", "dist_assigned_to"}

    def options(self) -> queries.ReadOptions:
        return queries.ReadOptions(rollups=False)

    def compute(self, session: Session, org_id: int) -> Any:
        rows = agent_report.agents(
            session,
            org_id=org_id,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
            targets=self.targets,
            min_tickets=self.min_tickets,
            schedule_id=self.schedule_id,
            approximate_above=self.approximate_above,
        )
        return {"agents": rows}


READERS: dict[str, Callable[[Mapping[str, Any]], Read]] = {
    reader.route: reader.from_params
    for reader in (
        TimeSeriesRead,
        DistributionRead,
        DashboardRead,
        PerformanceRead,
        AggregationRead,
        SnapshotsRead,
        TimeInStatusRead,
        AgentsRead,
    )
}


def from_params(params: Mapping[str, Any]) -> Read:
    """The read whose cache key is `params` (a popular query to refresh); KeyError for an unknown route."""
    return READERS[params["route"]](params)


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while an answer is built (reference counting still frees).

    An answer of thousands of cells allocates tens of thousands of dicts and tuples that live until
    it is sent; the collector walked them over and over: half the Python time of a 90-day hourly
    aggregation by channel (54 of 112 ms of CPU, profiled at 1M tickets). Process-wide, so another
    thread's answer may be built meanwhile without collections too; they resume when either ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read(
    session: Session | Callable[[], Session],
    client: redis.Redis,
    org_id: int,
    request: Read,
    *,
    ttl: int,
    force: bool = False,
    raw: bool = False,
    shortcuts: Shortcuts | None = None,
) -> tuple[Any, ReadMeta]:
    """The answer to `request` through the cache.

    `session` may be a function returning one, so that a cache hit opens no database connection.
    `raw` and `shortcuts` are read_through's: the answer as JSON text, and what makes a hit cheaper
    (the near cache).
    """
    params = request.params()
    counted = None if force else (popular.popular_key(org_id), popular.member("read", params))

    def compute() -> Computed:
        db = session() if callable(session) else session
        with queries.reading(request.options()) as provenance, collection_paused():
            value = request.compute(db, org_id)
        return Computed(value, {"source": provenance.source, "approximate": provenance.approximate})

    value, meta = read_through(
        client,
        org_id,
        request.families(),
        {**params, "cache_format": CACHE_FORMAT},
        compute,
        ttl=min(request.ttl, ttl) if request.ttl else ttl,
        force=force,
        count_in=counted,
        raw=raw,
        shortcuts=shortcuts,
    )
    return value, ReadMeta(meta.cache, meta.computed_at, meta.about["source"], meta.about["approximate"])
