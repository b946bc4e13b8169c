"""Analytics reads: time series, aggregations, distributions, dashboard, performance and snapshots."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from webapp.analytics import (
    aggregations,
    cost,
    metric_reads,
    readers,
    sla,
    snapshots,
    support_reads,
)
from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.cache import RawJson
from webapp.analytics.clock import CALENDAR, Clock, resolve
from webapp.analytics.metrics import DISTRIBUTION_FIELDS, METRICS
from webapp.analytics.sql import statement_timeout
from webapp.analytics.window import Window
from webapp.api.cache import cache_shortcuts
from webapp.api.plumbing import costs
from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.jobs_submit import submit_job
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.responses import json_object
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.schemas.analytics import (
    Agents,
    AgentsQuery,
    Aggregation,
    AggregationRequest,
    Dashboard,
    DashboardQuery,
    DistributionQuery,
    DistributionResponse,
    Performance,
    PerformanceQuery,
    SnapshotList,
    SnapshotQuery,
    SnapshotRequest,
    TimeInStatus,
    TimeInStatusQuery,
    TimeSeries,
    TimeSeriesQuery,
)
from webapp.api.schemas.common import JobAccepted
from webapp.api.schemas.fields import ClockFields
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import DASHBOARD_PERIODS
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization
from webapp.security.admission import current_principal, require_role

bp = Blueprint("analytics", __name__, url_prefix="/analytics")

M = TypeVar("M", bound=BaseModel)
DEFAULT_PERIOD = "30d"
ERRORS = (400, 401, 403, 429, 503)
# Reads that take clock and schedule_id: a schedule the organization does not have is a 404.
CLOCK_ERRORS = (400, 401, 403, 404, 429, 503)


def _query(model: type[M]) -> M:
    """The query string validated by `model`; an unknown parameter is a 400 listing the allowed ones."""
    unknown = sorted(set(request.args) - set(model.model_fields))
    if unknown:
        raise ApiError(
            400,
            f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(model.model_fields)}",
            details={"field": unknown[0]},
        )
    return parse_query(model)


def _known(value: str, allowed: Sequence[str], name: str) -> None:
    """A path parameter that names a kind of thing must be one of `allowed` (a 400 naming them)."""
    if value not in allowed:
        raise ApiError(
            400, f"unknown {name} {value!r}; allowed: {', '.join(allowed)}", details={"field": name}
        )


@dataclass(frozen=True)
class OrgSettings:
    """What analytics reads need of the caller's organization."""

    id: int
    timezone: str
    sla_targets: dict[str, Any] | None


# Read on nearly every analytics request and changed almost never: kept per process for a minute,
# so that a cache hit needs no database round trip at all.
_ORG_SECONDS = 60.0
_orgs: dict[int, tuple[float, OrgSettings]] = {}


def _org() -> OrgSettings:
    org_id = current_principal().org_id
    cached = _orgs.get(org_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    org = get_session().get(Organization, org_id)
    if org is None:
        raise ApiError(401, "the token's organization no longer exists")
    settings = OrgSettings(org.id, org.timezone, org.sla_targets)
    _orgs[org_id] = (time.monotonic() + _ORG_SECONDS, settings)
    return settings


def _session() -> Session:
    """The request's session with the analytics statement timeout for its transaction."""
    session = get_session()
    statement_timeout(session, current_app.config["ANALYTICS_STATEMENT_TIMEOUT_MS"])
    return session


def _max_cells() -> int:
    """ANALYTICS_MAX_CELLS, which reads whose rows only the data knows check once they know them."""
    return int(current_app.config["ANALYTICS_MAX_CELLS"])


def _approximate_above(exact: bool) -> int | None:
    """Measurements above which percentiles may come from sketches (None: exact was asked for)."""
    return None if exact else current_app.config["ROLLUP_EXACT_PERCENTILE_MAX"]


def _read(org_id: int, read: readers.Read) -> tuple[RawJson, dict[str, Any]]:
    """The answer through the cache as JSON text, and the meta block that says where it came from.

    A hit is one round trip, or none when the near cache holds what it needs.
    """
    value, meta = readers.read(
        _session,
        get_redis(),
        org_id,
        read,
        ttl=current_app.config["CACHE_TTL_SECONDS"],
        raw=True,
        shortcuts=cache_shortcuts(),
        budget=costs.read_budget(),
    )
    return value, meta.as_dict()


def _heavy(org_id: int, query: AggregationQuery) -> bool:
    """Whether the planner expects the aggregation to scan more rows than a request should wait for."""
    cost = aggregations.estimated_cost(_session(), org_id=org_id, query=query)
    return cost > current_app.config["AGGREGATION_ASYNC_THRESHOLD"]


def _clock(org_id: int, query: ClockFields) -> Clock:
    """The clock the request asks for (inside client_errors: a 400, or 404 for a foreign schedule)."""
    if query.clock == "calendar" and query.schedule_id is None:
        return CALENDAR  # no database round trip, so that a cache hit needs none
    return resolve(_session(), org_id, query.clock, query.schedule_id)


def _dashboard_head(query: DashboardQuery, window: Window) -> dict[str, Any]:
    """What the dashboard answer says of its period and the one before it."""
    return {
        "period": (query.period or DEFAULT_PERIOD) if query.start is None else None,
        **window.echo(),
        "filters": query.filters,
        "previous_start": window.previous_start().astimezone(window.tz).isoformat(),
        "previous_end": window.echo()["start"],
    }


@bp.get("/time-series/<metric>")
@document(
    "One metric per bucket of the range, aligned in the time zone, with a summary",
    tag="analytics",
    query=TimeSeriesQuery,
    responses={200: TimeSeries},
    path_enums={"metric": tuple(METRICS)},
    errors=CLOCK_ERRORS,
)
@require_role("viewer", read_only=True)
def time_series(metric: str) -> Response:
    _known(metric, tuple(METRICS), "metric")
    query = _query(TimeSeriesQuery)
    org = _org()
    with client_errors():  # the window is checked (bucket count too) before any SQL or cache lookup
        window = query.window(default_tz=org.timezone, now=utcnow(), granularity=query.granularity)
        costs.check(cost.series(window))
        costs.spend(org.id, window, query.exact)
        clock = _clock(org.id, query).for_metric(METRICS[metric])
        value, meta = _read(
            org.id, metric_reads.TimeSeriesRead(metric, window, query.filters, query.exact, clock)
        )
    head = {"metric": metric, "unit": METRICS[metric].unit, "granularity": query.granularity, **clock.echo()}
    return json_object({**head, **window.echo(), "filters": query.filters}, value, {"meta": meta})


@bp.post("/aggregations")
@document(
    "Several metrics by group (and bucket) with percentiles (from sketches above a size unless exact); "
    "202 with a job when async or heavy",
    tag="analytics",
    body=AggregationRequest,
    responses={200: Aggregation, 202: JobAccepted},
    errors=CLOCK_ERRORS,
)
@require_role("viewer")
@idempotent
def aggregate() -> Response | tuple[Response, int, dict[str, str]]:
    body = parse_body(AggregationRequest)
    org = _org()
    with client_errors():
        approximate_above = _approximate_above(body.exact)
        clock = _clock(org.id, body)
        query = body.query(
            default_tz=org.timezone, now=utcnow(), approximate_above=approximate_above, clock=clock
        )
        # async only lifts the wait, never the size of the answer: both are checked before any query.
        costs.check_aggregation(query, org.id)
        costs.spend(org.id, query.window, query.exact)
        if body.async_ or _heavy(org.id, query):
            costs.check_aggregation(query, org.id, queued=True)
            return submit_job("aggregation", query.params())
        value, meta = _read(org.id, metric_reads.AggregationRead(query, _max_cells()))
    return json_object(value, {"meta": meta})


@bp.get("/distribution/<field>")
@document(
    "Current values of one field over the tickets created in the range, with count and share",
    tag="analytics",
    query=DistributionQuery,
    responses={200: DistributionResponse},
    path_enums={"field": tuple(DISTRIBUTION_FIELDS)},
    errors=ERRORS,
)
@require_role("viewer", read_only=True)
def distribution(field: str) -> Response:
    _known(field, DISTRIBUTION_FIELDS, "field")
    query = _query(DistributionQuery)
    org = _org()
    with client_errors():
        window = query.window(default_tz=org.timezone, now=utcnow())
        costs.spend(org.id, window, query.exact)
        read = metric_reads.DistributionRead(field, window, query.filters, query.exact, _max_cells())
        value, meta = _read(org.id, read)
    return json_object(value, {**window.echo(), "filters": query.filters, "meta": meta})


@bp.get("/dashboard")
@document(
    "KPIs against the previous period, backlog, daily volume, status and priority mix, SLA",
    tag="analytics",
    query=DashboardQuery,
    responses={200: Dashboard},
    errors=CLOCK_ERRORS,
)
@require_role("viewer", read_only=True)
def dashboard() -> Response:
    query = _query(DashboardQuery)
    org = _org()
    if query.period is not None and query.start is not None:
        raise ApiError(400, "give period or start, not both", details={"field": "period"})
    # A period is that many local days up to end; the previous period is as many days before it.
    days = DASHBOARD_PERIODS[query.period or DEFAULT_PERIOD]
    with client_errors():
        window = query.window(default_tz=org.timezone, now=utcnow(), days=days)
        # Its daily series is counted here, so a range it cannot bucket runs no query.
        cost.check_buckets(window, "daily")
        costs.check(cost.series(window, granularity="daily"), field="start/end")
        costs.spend(org.id, window, query.exact)
        targets = sla.targets_for(org.sla_targets)
        clock = _clock(org.id, query)
        value, meta = _read(
            org.id, metric_reads.DashboardRead(window, query.filters, targets, query.exact, clock)
        )
    return json_object(_dashboard_head(query, window), value, {"meta": meta})


@bp.get("/performance")
@document(
    "p50/p95/p99/avg/count of response and resolution time (on clock), SLA compliance under the policy "
    "overall, by priority and by group_by",
    tag="analytics",
    query=PerformanceQuery,
    responses={200: Performance},
    errors=CLOCK_ERRORS,
)
@require_role("viewer", read_only=True)
def performance() -> Response:
    query = _query(PerformanceQuery)
    org = _org()
    with client_errors():
        window = query.window(default_tz=org.timezone, now=utcnow())
        costs.spend(org.id, window, query.exact)
        targets = sla.targets_for(org.sla_targets)
        approximate_above = _approximate_above(query.exact)
        clock = _clock(org.id, query)
        read = metric_reads.PerformanceRead(
            window,
            query.filters,
            targets,
            query.exact,
            approximate_above,
            clock,
            query.group_by,
            _max_cells(),
        )
        value, meta = _read(org.id, read)
    return json_object({**window.echo(), "filters": query.filters}, value, {"meta": meta})


@bp.get("/time-in-status")
@document(
    "Hours each ticket last solved in the range spent in open, pending and on_hold before that solve",
    tag="analytics",
    query=TimeInStatusQuery,
    responses={200: TimeInStatus},
    errors=(*ERRORS, 404),
)
@require_role("viewer", read_only=True)
def time_in_status() -> Response:
    query = _query(TimeInStatusQuery)
    org = _org()
    with client_errors():
        window = query.window(default_tz=org.timezone, now=utcnow())
        costs.spend_raw(org.id, window, query.exact)
        clock = _clock(org.id, query)
        read = support_reads.TimeInStatusRead(window, query.filters, clock.schedule_id)
        value, meta = _read(org.id, read)
    head = {**window.echo(), "filters": query.filters, **clock.echo()}
    return json_object(head, value, {"meta": meta})


@bp.get("/agents")
@document(
    "Per agent with at least min_tickets solved: solves, reply and resolution medians, SLA, csat, "
    "one-touch and reopen rates",
    tag="analytics",
    query=AgentsQuery,
    responses={200: Agents},
    errors=(*ERRORS, 404),
)
@require_role("viewer", read_only=True)
def agents() -> Response:
    query = _query(AgentsQuery)
    org = _org()
    with client_errors():
        window = query.window(default_tz=org.timezone, now=utcnow())
        costs.spend_raw(org.id, window, query.exact)
        targets = sla.targets_for(org.sla_targets)
        clock = _clock(org.id, query)
        read = support_reads.AgentsRead(
            window,
            query.filters,
            targets,
            query.min_tickets,
            clock.schedule_id,
            _approximate_above(query.exact),
            _max_cells(),
        )
        value, meta = _read(org.id, read)
    head = {**window.echo(), "filters": query.filters, **clock.echo(), "min_tickets": query.min_tickets}
    return json_object(head, value, {"meta": meta})


@bp.get("/snapshots")
@document(
    "Stored daily, weekly or monthly snapshots whose period starts in [start, end)",
    tag="analytics",
    query=SnapshotQuery,
    responses={200: SnapshotList},
    errors=ERRORS,
)
@require_role("viewer", read_only=True)
def list_snapshots() -> Response:
    query = _query(SnapshotQuery)
    org = _org()
    with client_errors():
        first, last = snapshots.listing_range(
            query.start, query.end, snapshot_type=query.type, tz=org.timezone, now=utcnow()
        )
        items, meta = _read(org.id, metric_reads.SnapshotsRead(query.type, first, last))
    head = {"type": query.type, "start": first.isoformat(), "end": last.isoformat()}
    return json_object({**head, "items": items, "meta": meta})


@bp.post("/snapshots")
@document(
    "Compute (or recompute) the snapshot of the period holding `date` in a job",
    tag="analytics",
    body=SnapshotRequest,
    responses={202: JobAccepted},
    errors=ERRORS,
)
@require_role("admin")
@idempotent
def request_snapshot() -> tuple[Response, int, dict[str, str]]:
    body = parse_body(SnapshotRequest)
    with client_errors():
        first = snapshots.requested_period(body.type, body.date, tz=_org().timezone, now=utcnow())
    return submit_job("snapshot", snapshots.job_params(body.type, first))
