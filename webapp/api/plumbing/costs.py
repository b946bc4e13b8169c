"""The cost limits of analytics answers, as every route that computes one applies them (inside
`client_errors`, which answers TooCostly with a 400 naming the estimate and the limit)."""

from __future__ import annotations

from flask import current_app

from webapp.analytics import aggregations, cost, read_time
from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.window import Window
from webapp.exports.spec import ExportSpec
from webapp.infra.db import get_session
from webapp.security.admission import spend_budget


def read_budget() -> read_time.Budget:
    """The read time a request's computations spend (ANALYTICS_READ_SECONDS_PER_MINUTE)."""
    return read_time.requests(current_app.config["ANALYTICS_READ_SECONDS_PER_MINUTE"])


def check(estimate: cost.Estimate, *, field: str = "granularity") -> None:
    """Refuse an answer of more than ANALYTICS_MAX_CELLS cells, before any query."""
    estimate.check(current_app.config["ANALYTICS_MAX_CELLS"], field=field)


def check_aggregation(query: AggregationQuery, org_id: int | None, *, queued: bool = False) -> None:
    """check() for an aggregation. `queued` (a job is about to be queued for it: async, heavy, an
    export) with `org_id`: a free-text group_by first counts the combinations the range's tickets
    hold, so no job is queued for an answer its own check would refuse. An answer computed at once
    checks its groups once known instead, before it builds a row (no extra read on a cache hit)."""
    if queued and org_id is not None:
        check(aggregations.queued_estimate(get_session(), org_id=org_id, query=query))
    else:
        check(query.estimate())


def spend(org_id: int, window: Window, exact: bool) -> None:
    """Refuse an exact read over more than ANALYTICS_EXACT_MAX_DAYS, and spend the analytics budget
    an exact one costs beyond the request its admission spent (429 when it is spent)."""
    units = cost.exact_units(window, exact, max_days=current_app.config["ANALYTICS_EXACT_MAX_DAYS"])
    if units > 1:
        spend_budget(org_id, "analytics", units - 1)


def spend_raw(org_id: int, window: Window, exact: bool) -> None:
    """Refuse an exact read over more than ANALYTICS_EXACT_MAX_DAYS, as every route taking exact=true
    does (TooCostly, before any query: a read of raw rows is no cheaper for being asked exact), and
    spend the analytics budget a read of raw rows over `window` costs beyond the request its admission
    spent (429 when it is spent)."""
    cost.exact_units(window, exact, max_days=current_app.config["ANALYTICS_EXACT_MAX_DAYS"])
    units = cost.raw_units(window)
    if units > 1:
        spend_budget(org_id, "analytics", units - 1)


def check_export(spec: ExportSpec, org_id: int, *, spend_exact: bool = True) -> None:
    """The limits of the analytics answer an export writes (a series, an aggregation, its free-text
    groups counted over its range), before any query of it; the budget an exact one costs is spent
    too, unless `spend_exact` is false (a report schedule spends none when it is saved, its runs
    being checked again as they start)."""
    spec.check_cells(get_session(), org_id, current_app.config["ANALYTICS_MAX_CELLS"])
    query = spec.query
    if isinstance(query, AggregationQuery):
        if spend_exact:
            spend(org_id, query.window, query.exact)
        else:
            cost.exact_units(
                query.window, query.exact, max_days=current_app.config["ANALYTICS_EXACT_MAX_DAYS"]
            )
