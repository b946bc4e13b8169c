"""The cost limits of analytics answers, as every route that computes one applies them (inside
`client_errors`, which answers TooCostly with a 400 naming the estimate and the limit)."""

from __future__ import annotations

from flask import current_app

from webapp.analytics import cost, ticket_counts
from webapp.analytics.aggregations import AggregationQuery
from webapp.analytics.window import Window
from webapp.exports.spec import ExportSpec, SeriesQuery
from webapp.infra.db import get_session
from webapp.security.admission import spend_budget


def check(estimate: cost.Estimate, *, field: str = "granularity") -> None:
    """Refuse an answer of more than ANALYTICS_MAX_CELLS cells, before any query."""
    estimate.check(current_app.config["ANALYTICS_MAX_CELLS"], field=field)


def check_aggregation(query: AggregationQuery, org_id: int | None) -> None:
    """check() for an aggregation: with `org_id`, a free-text group_by counts the values the
    organization's tickets hold (one index read, no event read), so neither a job nor an export is
    queued for an answer its own check would refuse."""
    free = query.free_text()
    known = None
    if free and org_id is not None:
        known = ticket_counts.distinct_values(get_session(), org_id=org_id, fields=free)
    check(query.estimate(known))


def spend(org_id: int, window: Window, exact: bool) -> None:
    """Refuse an exact read over more than ANALYTICS_EXACT_MAX_DAYS, and spend the analytics budget
    an exact one costs beyond the request its admission spent (429 when it is spent)."""
    units = cost.exact_units(window, exact, max_days=current_app.config["ANALYTICS_EXACT_MAX_DAYS"])
    if units > 1:
        spend_budget(org_id, "analytics", units - 1)


def spend_raw(org_id: int, window: Window) -> None:
    """Spend the analytics budget a read of raw rows over `window` costs beyond the request its
    admission spent (429 when it is spent), before the read."""
    units = cost.raw_units(window)
    if units > 1:
        spend_budget(org_id, "analytics", units - 1)


def check_export(spec: ExportSpec, org_id: int | None = None) -> None:
    """The limits of the analytics answer an export writes (a series, an aggregation), before any
    query; with `org_id`, the budget an exact one costs is spent too (a report schedule spends none
    when it is saved)."""
    query = spec.query
    if isinstance(query, AggregationQuery):
        check_aggregation(query, org_id)
        if org_id is None:
            cost.exact_units(
                query.window, query.exact, max_days=current_app.config["ANALYTICS_EXACT_MAX_DAYS"]
            )
        else:
            spend(org_id, query.window, query.exact)
    elif isinstance(query, SeriesQuery):
        check(cost.series(query.window))
