"""Analytics reads: time series, aggregations, distributions, dashboard, performance and snapshots."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import aggregations, queries, readers, sla, snapshots
from webapp.analytics.aggregations import QueryError
from webapp.analytics.buckets import (
    check_bucket_count,
    default_end,
    previous_period_start,
    resolve_range,
    shift_days,
)
from webapp.analytics.cache import RawJson
from webapp.analytics.metrics import DISTRIBUTION_FIELDS, METRICS
from webapp.api.cache import cache_shortcuts
from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.jobs_submit import submit_job
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.responses import json_object
from webapp.api.plumbing.spec import document, parse_body, parse_query
from webapp.api.schemas.analytics import (
    Aggregation,
    AggregationRequest,
    Dashboard,
    DashboardQuery,
    DistributionQuery,
    DistributionResponse,
    Performance,
    PerformanceQuery,
    RangeQuery,
    SnapshotList,
    SnapshotQuery,
    SnapshotRequest,
    TimeSeries,
    TimeSeriesQuery,
)
from webapp.api.schemas.common import JobAccepted
from webapp.core.filters import parse_filters
from webapp.core.timeutil import EARLIEST, LATEST, parse_datetime, utcnow, zone
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization
from webapp.security.admission import current_principal, require_role

bp = Blueprint("analytics", __name__, url_prefix="/analytics")

M = TypeVar("M", bound=BaseModel)
Filters = queries.Filters
SNAPSHOT_DEFAULT_DAYS = {"daily": 31, "weekly": 26 * 7, "monthly": 366}
ERRORS = (400, 401, 403, 503)


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
    timeout = current_app.config.get("ANALYTICS_STATEMENT_TIMEOUT_MS")
    if timeout:
        session.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(timeout))})
    return session


def _window(query: RangeQuery, org: OrgSettings) -> tuple[ZoneInfo, datetime, datetime, Filters]:
    """Time zone, [start, end) and filters of a range query (default: the last 30 local days)."""
    tz = zone(query.tz or org.timezone)
    start = parse_datetime(query.start, tz, "start") if query.start else None
    end = parse_datetime(query.end, tz, "end") if query.end else None
    start, end = resolve_range(start, end, tz, utcnow())
    return tz, start, end, parse_filters(query.model_dump())


def _range_params(
    tz: ZoneInfo, start: datetime, end: datetime, filters: Filters, *, exact: bool = False
) -> dict[str, Any]:
    # UTC, so that one instant written with different offsets shares a cache entry.
    params: dict[str, Any] = {
        "tz": tz.key,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "filters": filters,
    }
    # Only when asked, so the cache keys of ordinary requests do not change.
    if exact:
        params["exact"] = True
    return params


def _percentile_policy(params: dict[str, Any]) -> dict[str, Any]:
    """`params` allowing sketch percentiles above the configured number of measurements, unless exact."""
    if params.get("exact"):
        return params
    return {**params, "approximate_above": current_app.config.get("ROLLUP_EXACT_PERCENTILE_MAX", 200_000)}


def _echo(tz: ZoneInfo, start: datetime, end: datetime, filters: Filters) -> dict[str, Any]:
    return {
        "timezone": tz.key,
        "start": start.astimezone(tz).isoformat(),
        "end": end.astimezone(tz).isoformat(),
        "filters": filters,
    }


def _read(org_id: int, params: dict[str, Any]) -> tuple[RawJson, dict[str, Any]]:
    """The answer through the cache as JSON text, and the meta block that says where it came from.

    A hit is one round trip, or none when the near cache holds what it needs.
    """
    value, meta = readers.read(
        _session,
        get_redis(),
        org_id,
        params,
        ttl=current_app.config["CACHE_TTL_SECONDS"],
        raw=True,
        shortcuts=cache_shortcuts(),
    )
    return value, meta.as_dict()


@bp.get("/time-series/<metric>")
@document(
    "One metric per bucket of the range, aligned in the time zone, with a summary",
    tag="analytics",
    query=TimeSeriesQuery,
    responses={200: TimeSeries},
    path_enums={"metric": tuple(METRICS)},
    errors=ERRORS,
)
@require_role("viewer", read_only=True)
def time_series(metric: str) -> Response:
    if metric not in METRICS:
        raise ApiError(
            400, f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}", details={"field": "metric"}
        )
    query = _query(TimeSeriesQuery)
    org = _org()
    with client_errors():
        tz, start, end, filters = _window(query, org)
        check_bucket_count(query.granularity, start, end, tz)  # before any SQL or cache lookup
        params = {
            "route": "time_series",
            "metric": metric,
            "granularity": query.granularity,
            **_range_params(tz, start, end, filters, exact=query.exact),
        }
        value, meta = _read(org.id, params)
    return json_object(
        {
            "metric": metric,
            "unit": METRICS[metric].unit,
            "granularity": query.granularity,
            **_echo(tz, start, end, filters),
        },
        value,
        {"meta": meta},
    )


@bp.post("/aggregations")
@document(
    "Several metrics by group (and bucket) with percentiles (from sketches above a size unless exact); "
    "202 with a job when async or heavy",
    tag="analytics",
    body=AggregationRequest,
    responses={200: Aggregation, 202: JobAccepted},
    errors=ERRORS,
)
@require_role("viewer")
def aggregate() -> Response | tuple[Response, int, dict[str, str]]:
    body = parse_body(AggregationRequest)
    org = _org()
    with client_errors():
        params = _percentile_policy(
            aggregations.canonical_params(
                body.model_dump(exclude={"async_"}), default_tz=org.timezone, now=utcnow()
            )
        )
        session = _session()
        if body.async_ or (
            aggregations.estimated_cost(session, org_id=org.id, params=params)
            > current_app.config["AGGREGATION_ASYNC_THRESHOLD"]
        ):
            return submit_job("aggregation", params)
        value, meta = _read(org.id, {"route": "aggregations", "query": params})
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
    if field not in DISTRIBUTION_FIELDS:
        raise ApiError(
            400,
            f"unknown field {field!r}; allowed: {', '.join(DISTRIBUTION_FIELDS)}",
            details={"field": "field"},
        )
    query = _query(DistributionQuery)
    org = _org()
    with client_errors():
        tz, start, end, filters = _window(query, org)
        value, meta = _read(
            org.id,
            {
                "route": "distribution",
                "field": field,
                **_range_params(tz, start, end, filters, exact=query.exact),
            },
        )
    return json_object(value, {**_echo(tz, start, end, filters), "meta": meta})


@bp.get("/dashboard")
@document(
    "KPIs against the previous period, backlog, daily volume, status and priority mix, SLA",
    tag="analytics",
    query=DashboardQuery,
    responses={200: Dashboard},
    errors=ERRORS,
)
@require_role("viewer", read_only=True)
def dashboard() -> Response:
    query = _query(DashboardQuery)
    org = _org()
    if query.period is not None and query.start is not None:
        raise ApiError(400, "give period or start, not both", details={"field": "period"})
    with client_errors():
        tz = zone(query.tz or org.timezone)
        if query.start is None:
            # A period (default 30d) is that many local days; the previous one is as many days before.
            days = int((query.period or "30d")[:-1])
            end = parse_datetime(query.end, tz, "end") if query.end else default_end(utcnow(), tz)
            start = shift_days(end, -days, tz)
            previous_start = previous_period_start(start, end, tz)
        else:
            _, start, end, _ = _window(query, org)
            previous_start = previous_period_start(start, end, tz)
        filters = parse_filters(query.model_dump())
        targets = sla.targets_for(org.sla_targets)
        params = {
            "route": "dashboard",
            "previous_start": previous_start.astimezone(UTC).isoformat(),
            "targets": targets,
            **_range_params(tz, start, end, filters, exact=query.exact),
        }
        value, meta = _read(org.id, params)
    return json_object(
        {
            "period": query.period if query.start is None else None,
            **_echo(tz, start, end, filters),
            "previous_start": previous_start.astimezone(tz).isoformat(),
            "previous_end": start.astimezone(tz).isoformat(),
        },
        value,
        {"meta": meta},
    )


@bp.get("/performance")
@document(
    "p50/p95/p99/avg/count of response and resolution time, SLA compliance overall and by priority",
    tag="analytics",
    query=PerformanceQuery,
    responses={200: Performance},
    errors=ERRORS,
)
@require_role("viewer", read_only=True)
def performance() -> Response:
    query = _query(PerformanceQuery)
    org = _org()
    with client_errors():
        tz, start, end, filters = _window(query, org)
        targets = sla.targets_for(org.sla_targets)
        params = _percentile_policy(
            {
                "route": "performance",
                "targets": targets,
                **_range_params(tz, start, end, filters, exact=query.exact),
            }
        )
        value, meta = _read(org.id, params)
    return json_object(_echo(tz, start, end, filters), value, {"meta": meta})


def _local_date(raw: str, tz: ZoneInfo, field: str) -> date:
    return parse_datetime(raw, tz, field).astimezone(tz).date()


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
        tz = zone(org.timezone)
        end = (
            _local_date(query.end, tz, "end")
            if query.end
            else utcnow().astimezone(tz).date() + timedelta(days=1)
        )
        start = (
            _local_date(query.start, tz, "start")
            if query.start
            else end - timedelta(days=SNAPSHOT_DEFAULT_DAYS[query.type])
        )
        if start >= end:
            raise QueryError(f"start ({start}) must be before end ({end})", "start")
        items, meta = _read(
            org.id,
            {"route": "snapshots", "type": query.type, "start": start.isoformat(), "end": end.isoformat()},
        )
    return json_object(
        {"type": query.type, "start": start.isoformat(), "end": end.isoformat(), "items": items, "meta": meta}
    )


@bp.post("/snapshots")
@document(
    "Compute (or recompute) the snapshot of the period holding `date` in a job",
    tag="analytics",
    body=SnapshotRequest,
    responses={202: JobAccepted},
    errors=ERRORS,
)
@require_role("admin")
def request_snapshot() -> tuple[Response, int, dict[str, str]]:
    body = parse_body(SnapshotRequest)
    try:
        day = date.fromisoformat(body.date)
    except ValueError as exc:
        raise ApiError(
            400, f"date {body.date!r} is not an ISO 8601 date (YYYY-MM-DD)", details={"field": "date"}
        ) from exc
    if not EARLIEST.year <= day.year < LATEST.year:
        raise ApiError(
            400,
            f"date {body.date} is outside the years 1900 to 2199 this platform measures",
            details={"field": "date"},
        )
    first, _ = snapshots.snapshot_period(body.type, day)
    return submit_job("snapshot", {"snapshot_type": body.type, "snapshot_date": first.isoformat()})
