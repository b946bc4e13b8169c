"""Every cached analytics read as a function of its canonical parameters.

The views build the parameters and read through the cache; the refresh job recomputes the
organization's most requested parameters with the same functions, so both always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import redis
from sqlalchemy.orm import Session

from webapp.analytics import aggregations, popular, queries, reports, snapshots
from webapp.analytics.buckets import make_buckets
from webapp.analytics.cache import CacheMeta, read_through
from webapp.analytics.metrics import METRICS
from webapp.timeutil import utcnow, zone

# Answers that depend on the clock (SLA pending turns breached with no event) are cached briefly.
CLOCK_TTL_SECONDS = 60


@dataclass(frozen=True)
class Reader:
    families: Callable[[dict[str, Any]], set[str]]
    compute: Callable[[Session, int, dict[str, Any]], Any]
    ttl: int | None = None


def _range(params: dict[str, Any]) -> tuple[Any, datetime, datetime]:
    return zone(params["tz"]), datetime.fromisoformat(params["start"]), datetime.fromisoformat(params["end"])


def _time_series(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    tz, start, end = _range(params)
    buckets = make_buckets(params["granularity"], start, end, tz)
    return queries.time_series(
        session,
        org_id=org_id,
        metric=params["metric"],
        buckets=buckets,
        start=start,
        end=end,
        filters=params["filters"],
    )


def _distribution(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    _, start, end = _range(params)
    return queries.distribution(
        session, org_id=org_id, field=params["field"], start=start, end=end, filters=params["filters"]
    )


def _dashboard(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    tz, start, end = _range(params)
    return reports.dashboard(
        session,
        org_id=org_id,
        tz=tz,
        start=start,
        end=end,
        previous_start=datetime.fromisoformat(params["previous_start"]),
        filters=params["filters"],
        targets=params["targets"],
        now=utcnow(),
    )


def _performance(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    _, start, end = _range(params)
    return reports.performance(
        session,
        org_id=org_id,
        start=start,
        end=end,
        filters=params["filters"],
        targets=params["targets"],
        now=utcnow(),
    )


def _snapshots(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    return snapshots.list_snapshots(
        session,
        org_id=org_id,
        snapshot_type=params["type"],
        start=date.fromisoformat(params["start"]),
        end=date.fromisoformat(params["end"]),
    )


def _aggregation(session: Session, org_id: int, params: dict[str, Any]) -> Any:
    return aggregations.run_aggregation(session, org_id=org_id, params=params["query"])


READERS: dict[str, Reader] = {
    "time_series": Reader(lambda p: set(METRICS[p["metric"]].families), _time_series),
    "distribution": Reader(lambda p: {f"dist_{p['field']}"}, _distribution),
    "dashboard": Reader(lambda p: set(reports.DASHBOARD_FAMILIES), _dashboard, CLOCK_TTL_SECONDS),
    "performance": Reader(lambda p: set(reports.PERFORMANCE_FAMILIES), _performance, CLOCK_TTL_SECONDS),
    "aggregations": Reader(lambda p: aggregations.families(p["query"]), _aggregation),
    "snapshots": Reader(lambda p: {"snapshots"}, _snapshots),
}


def read(
    session: Session,
    client: redis.Redis,
    org_id: int,
    params: dict[str, Any],
    *,
    ttl: int,
    force: bool = False,
) -> tuple[Any, CacheMeta]:
    """The answer for `params` (whose "route" names the reader) through the cache."""
    reader = READERS[params["route"]]
    if not force:
        popular.record(client, org_id, "read", params)
    return read_through(
        client,
        org_id,
        reader.families(params),
        params,
        lambda: reader.compute(session, org_id, params),
        ttl=min(reader.ttl, ttl) if reader.ttl else ttl,
        force=force,
    )
