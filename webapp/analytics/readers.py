"""Every cached analytics read as an object: its cache key, the families it depends on, its answer.

The views build a read from the validated request and read it through the cache; the refresh job
rebuilds the organization's most requested reads from their keys (`from_params`) and recomputes them
with the same code, so both always agree. What an answer was computed from (rollups, raw events,
sketches) is cached with it, so a hit reports it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import redis
from sqlalchemy.orm import Session

from webapp.analytics import popular, provenance, read_time
from webapp.analytics.cache import Computed, Shortcuts, read_through
from webapp.analytics.cost import TooCostly
from webapp.analytics.metric_reads import (
    AggregationRead,
    DashboardRead,
    DistributionRead,
    PerformanceRead,
    SnapshotsRead,
    TimeSeriesRead,
)
from webapp.analytics.provenance import reading
from webapp.analytics.read_time import ReadTimeSpent
from webapp.analytics.support_reads import AgentsRead, TimeInStatusRead

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
    def options(self) -> provenance.ReadOptions: ...
    def compute(self, session: Session, org_id: int) -> Any: ...


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


# The key of a cached refusal's facts (cache meta `about`): its message, field and details.
REFUSED = "refused"


def _refusal(exc: TooCostly) -> dict[str, Any]:
    return {"message": str(exc), "field": exc.field, "details": exc.details}


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
    budget: read_time.Budget | None = None,
) -> tuple[Any, ReadMeta]:
    """The answer to `request` through the cache.

    `session` may be a function returning one, so that a cache hit opens no database connection.
    `raw` and `shortcuts` are read_through's: the answer as JSON text, and what makes a hit cheaper
    (the near cache); `budget`, the organization's read seconds a minute a computation must fit in
    (read_time).
    """
    params = request.params()
    counted = None if force else (popular.popular_key(org_id), popular.member("read", params))

    def compute() -> Computed:
        db = session() if callable(session) else session
        with reading(request.options()) as provenance:
            try:
                value = request.compute(db, org_id)
            except TooCostly as exc:
                # Refused once its rows were known: the refusal is cached as the answer would be (the
                # same key, families and ttl), so a client repeating it is refused at a hit's cost
                # until the data changes, instead of paying the read each time.
                return Computed(
                    None, {"source": provenance.source, "approximate": False, REFUSED: _refusal(exc)}
                )
        return Computed(value, {"source": provenance.source, "approximate": provenance.approximate})

    def through(force: bool) -> tuple[Any, Any]:
        return read_through(
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
            budget=budget,
        )

    try:
        value, meta = through(force)
        refused = meta.about.get(REFUSED)
        # A refusal of rows (aggregations.MAX_ROWS, fixed) holds whatever the cell limit is.
        of_cells = refused is not None and refused["details"].get("unit") != "rows"
        if of_cells and refused["details"].get("limit") != getattr(request, "max_cells", None):
            # Refused under another limit (the setting changed): judged again under this one.
            value, meta = through(True)
            refused = meta.about.get(REFUSED)
        if refused is not None:
            raise TooCostly(refused["message"], refused["field"], refused["details"])
    except (TooCostly, ReadTimeSpent):
        # Counted as it was looked up, refused (once its rows were known, or for the organization's
        # read time): not a query to warm.
        if counted is not None:
            with contextlib.suppress(redis.RedisError):
                popular.forget(client, org_id, counted[1].encode())
        raise
    return value, ReadMeta(meta.cache, meta.computed_at, meta.about["source"], meta.about["approximate"])
