"""The embed view's reads: the API's analytics answers for the link's organization and filters only.

Parameters are built in the canonical form the API's views use, so an embedded chart and the same
request over the API share one cache entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, current_app
from sqlalchemy import text

from webapp.analytics import readers, sla
from webapp.analytics.buckets import check_bucket_count, default_end, previous_period_start, shift_days
from webapp.analytics.metrics import METRICS
from webapp.api.plumbing.responses import json_object
from webapp.core.timeutil import utcnow, zone
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
GRANULARITIES = ("daily", "weekly", "monthly")
Filters = dict[str, list[str | None]]


@dataclass(frozen=True)
class Window:
    """The last `days` local days up to the end of today, and the period before them."""

    period: str
    tz: ZoneInfo
    start: datetime
    end: datetime
    previous_start: datetime

    @classmethod
    def last(cls, period: str, tz: ZoneInfo) -> Window:
        """The period (7d, 30d or 90d) ending with today in `tz`."""
        end = default_end(utcnow(), tz)
        start = shift_days(end, -PERIODS[period], tz)
        return cls(period, tz, start, end, previous_period_start(start, end, tz))

    def params(self, filters: Filters) -> dict[str, Any]:
        """The range part of a read's cache parameters."""
        # UTC, as the API's views write them: one instant, one cache key.
        return {
            "tz": self.tz.key,
            "start": self.start.astimezone(UTC).isoformat(),
            "end": self.end.astimezone(UTC).isoformat(),
            "filters": filters,
        }

    def echo(self, filters: Filters) -> dict[str, Any]:
        """The range as the API's answers repeat it, in the zone."""
        return {
            "timezone": self.tz.key,
            "start": self.start.astimezone(self.tz).isoformat(),
            "end": self.end.astimezone(self.tz).isoformat(),
            "filters": filters,
        }


def organization(org_id: int) -> Organization | None:
    """The link's organization (None once it is deleted)."""
    return get_session().get(Organization, org_id)


def _read(org_id: int, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    session = get_session()
    timeout = current_app.config["ANALYTICS_STATEMENT_TIMEOUT_MS"]
    if timeout:
        session.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(timeout))})
    value, meta = readers.read(
        session, get_redis(), org_id, params, ttl=current_app.config["CACHE_TTL_SECONDS"], raw=True
    )
    return value, meta.as_dict()


def dashboard(org: Organization, window: Window, filters: Filters) -> Response:
    """The API's dashboard answer for the window."""
    params = {
        "route": "dashboard",
        "previous_start": window.previous_start.astimezone(UTC).isoformat(),
        "targets": sla.targets_for(org.sla_targets),
        **window.params(filters),
    }
    value, meta = _read(org.id, params)
    echo = {
        "period": window.period,
        **window.echo(filters),
        "previous_start": window.previous_start.astimezone(window.tz).isoformat(),
        "previous_end": window.start.astimezone(window.tz).isoformat(),
    }
    return json_object(echo, value, {"meta": meta})


def distribution(org: Organization, window: Window, filters: Filters, field: str) -> Response:
    """The API's distribution answer of `field` for the window."""
    value, meta = _read(org.id, {"route": "distribution", "field": field, **window.params(filters)})
    return json_object(value, {**window.echo(filters), "meta": meta})


def time_series(
    org: Organization, window: Window, filters: Filters, metric: str, granularity: str
) -> Response:
    """The API's time series of `metric` for the window."""
    check_bucket_count(granularity, window.start, window.end, window.tz)
    params = {"route": "time_series", "metric": metric, "granularity": granularity, **window.params(filters)}
    value, meta = _read(org.id, params)
    head = {"metric": metric, "unit": METRICS[metric].unit, "granularity": granularity}
    return json_object({**head, **window.echo(filters)}, value, {"meta": meta})


def org_zone(org: Organization) -> ZoneInfo:
    """The zone the organization's days are read in."""
    return zone(org.timezone)
