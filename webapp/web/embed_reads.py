"""The embed view's reads: the API's analytics answers for the link's organization and filters only.

They are the API's own reads (the same Window and read objects), so an embedded chart and the same
request over the API share one cache entry.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from webapp.analytics import metric_reads, readers, sla
from webapp.analytics.metrics import METRICS
from webapp.analytics.sql import statement_timeout
from webapp.analytics.window import Window, canonical_window
from webapp.api.cache import cache_shortcuts
from webapp.api.plumbing import costs
from webapp.api.plumbing.responses import json_object
from webapp.core.filters import Filters
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization, User

GRANULARITIES = ("daily", "weekly", "monthly")


def organization(org_id: int) -> Organization | None:
    """The link's organization (None once it is deleted)."""
    return get_session().get(Organization, org_id)


def maker_may_share(org_id: int, user_id: int) -> bool:
    """Whether the admin who made a link still may: an enabled admin of the link's organization."""
    user = get_session().get(User, user_id)
    return user is not None and user.org_id == org_id and user.role == "admin" and user.disabled_at is None


def last_days(org: Organization, days: int, granularity: str | None = None) -> Window:
    """The last `days` local days of the organization up to the end of today."""
    return canonical_window(
        None, None, tz=None, default_tz=org.timezone, now=utcnow(), granularity=granularity, days=days
    )


def _read(org_id: int, read: readers.Read) -> tuple[Any, dict[str, Any]]:
    session = get_session()
    statement_timeout(session, current_app.config["ANALYTICS_STATEMENT_TIMEOUT_MS"])
    value, meta = readers.read(
        session,
        get_redis(),
        org_id,
        read,
        ttl=current_app.config["CACHE_TTL_SECONDS"],
        raw=True,
        shortcuts=cache_shortcuts(),
        budget=costs.read_budget(),
    )
    return value, meta.as_dict()


def dashboard(org: Organization, window: Window, filters: Filters, period: str) -> Response:
    """The API's dashboard answer for the window."""
    read = metric_reads.DashboardRead(window, filters, sla.targets_for(org.sla_targets))
    value, meta = _read(org.id, read)
    echo = {
        "period": period,
        **window.echo(),
        "filters": filters,
        "previous_start": window.previous_start().astimezone(window.tz).isoformat(),
        "previous_end": window.echo()["start"],
    }
    return json_object(echo, value, {"meta": meta})


def distribution(org: Organization, window: Window, filters: Filters, field: str) -> Response:
    """The API's distribution answer of `field` for the window."""
    max_cells = int(current_app.config["ANALYTICS_MAX_CELLS"])
    value, meta = _read(org.id, metric_reads.DistributionRead(field, window, filters, max_cells=max_cells))
    return json_object(value, {**window.echo(), "filters": filters, "meta": meta})


def time_series(org: Organization, window: Window, filters: Filters, metric: str) -> Response:
    """The API's time series of `metric` for the window (at its granularity)."""
    value, meta = _read(org.id, metric_reads.TimeSeriesRead(metric, window, filters))
    head = {"metric": metric, "unit": METRICS[metric].unit, "granularity": window.granularity}
    return json_object({**head, **window.echo(), "filters": filters}, value, {"meta": meta})
