"""Every cached analytics read as a function of its canonical parameters.

The views build the parameters and read through the cache; the refresh job recomputes the
organization's most requested parameters with the same functions, so both always agree. What an
answer was computed from (rollups, raw events, sketches) is cached with it, so a hit reports it too.
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
from webapp.analytics.cache import Computed, Shortcuts, read_through
from webapp.analytics.metrics import METRICS
from webapp.core.timeutil import utcnow, zone

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


def read_options(params: dict[str, Any]) -> queries.ReadOptions:
    """The options `params` ask for: `exact` forces raw, `approximate_above` allows sketches."""
    source = params.get("query", params)
    if source.get("exact"):
        return queries.ReadOptions(rollups=False)
    return queries.ReadOptions(rollups=True, approximate_above=source.get("approximate_above"))


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


def _current_filters(params: dict[str, Any]) -> set[str]:
    """The families of the dimensions a read filters on by the tickets' current values: a change of
    any of them moves a ticket in or out of the answer (dist_<field> is bumped when <field> changes)."""
    return {f"dist_{name}" for name in params.get("filters") or {}}


READERS: dict[str, Reader] = {
    "time_series": Reader(lambda p: set(METRICS[p["metric"]].families), _time_series),
    "distribution": Reader(lambda p: {f"dist_{p['field']}"} | _current_filters(p), _distribution),
    "dashboard": Reader(
        lambda p: set(reports.DASHBOARD_FAMILIES) | _current_filters(p), _dashboard, CLOCK_TTL_SECONDS
    ),
    "performance": Reader(
        lambda p: set(reports.PERFORMANCE_FAMILIES) | _current_filters(p), _performance, CLOCK_TTL_SECONDS
    ),
    "aggregations": Reader(lambda p: aggregations.families(p["query"]), _aggregation),
    "snapshots": Reader(lambda p: {"snapshots"}, _snapshots),
}


def read(
    session: Session | Callable[[], Session],
    client: redis.Redis,
    org_id: int,
    params: dict[str, Any],
    *,
    ttl: int,
    force: bool = False,
    raw: bool = False,
    shortcuts: Shortcuts | None = None,
) -> tuple[Any, ReadMeta]:
    """The answer for `params` (whose "route" names the reader) through the cache.

    `session` may be a function returning one, so that a cache hit opens no database connection.
    `raw` and `shortcuts` are read_through's: the answer as JSON text, and what makes a hit cheaper
    (the near cache).
    """
    reader = READERS[params["route"]]
    counted = None if force else (popular.popular_key(org_id), popular.member("read", params))

    def compute() -> Computed:
        db = session() if callable(session) else session
        with queries.reading(read_options(params)) as provenance:
            value = reader.compute(db, org_id, params)
        return Computed(value, {"source": provenance.source, "approximate": provenance.approximate})

    value, meta = read_through(
        client,
        org_id,
        reader.families(params),
        {**params, "cache_format": CACHE_FORMAT},
        compute,
        ttl=min(reader.ttl, ttl) if reader.ttl else ttl,
        force=force,
        count_in=counted,
        raw=raw,
        shortcuts=shortcuts,
    )
    return value, ReadMeta(meta.cache, meta.computed_at, meta.about["source"], meta.about["approximate"])
