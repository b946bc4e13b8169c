"""The overview's charts and CSAT tile for the support metrics (CSAT, backlog over time, created against
solved) in a real browser, against the API's answers and the ratings in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page
from sqlalchemy import text

from tests.browser.conftest import Watched, screenshot
from tests.conftest import Tenant
from tests.e2e.conftest import Web
from webapp.core.timeutil import utcnow

pytestmark = pytest.mark.worker

# (days ago, rating) given in this order for each ticket; the rating with the latest time stands.
RATINGS = [
    [(3, 5)],
    [(2, 4)],
    [(2, 2)],
    [(1, 1)],
    [(5, 5), (4, 2)],  # re-rated later: bad
    [(1, 3), (6, 5)],  # an older rating given afterwards changes nothing: bad
]


def _overview(watched: Watched, tenant: Tenant) -> Page:
    watched.sign_in(tenant.users["viewer"]["email"])
    page = watched.page()
    page.goto("/?period=30d")
    page.wait_for_selector("body[data-loaded]")
    return page


def _rate(web: Web, tenant: Tenant) -> None:
    """Rate fresh tickets as RATINGS says."""
    token = tenant.users["agent"]["token"]
    now = utcnow()
    for given in RATINGS:
        created = (now - timedelta(days=20)).isoformat()
        status, ticket = web.request(
            "POST", "/api/v1/tickets", token, {"subject": "rated", "created_at": created}
        )
        assert status == 201, ticket
        for days, rating in given:
            at = (now - timedelta(days=days)).isoformat()
            status, answer = web.request(
                "PUT", f"/api/v1/tickets/{ticket['id']}/satisfaction", token, {"rating": rating, "at": at}
            )
            assert status in (200, 201), answer


def _good_share(engine: Any, org_id: int, start: datetime, end: datetime) -> tuple[float | None, int]:
    """The share of good (4 or 5) standing ratings given in [start, end), in percent (None without
    ratings), and their number."""
    with engine.connect() as conn:
        ratings = (
            conn.execute(
                text("SELECT rating FROM ticket_ratings WHERE org_id = :org AND at >= :start AND at < :end"),
                {"org": org_id, "start": start, "end": end},
            )
            .scalars()
            .all()
        )
    if not ratings:
        return None, 0
    return 100 * sum(1 for r in ratings if r >= 4) / len(ratings), len(ratings)


def _series(web: Web, tenant: Tenant, metric: str, dashboard: dict[str, Any]) -> dict[str, Any]:
    query = urlencode({"start": dashboard["start"], "end": dashboard["end"], "granularity": "daily"})
    status, answer = web.request(
        "GET", f"/api/v1/analytics/time-series/{metric}?{query}", tenant.users["viewer"]["token"]
    )
    assert status == 200, answer
    return answer


def _dashboard(web: Web, tenant: Tenant) -> dict[str, Any]:
    status, dashboard = web.request(
        "GET", "/api/v1/analytics/dashboard?period=30d", tenant.users["viewer"]["token"]
    )
    assert status == 200, dashboard
    return dashboard


def test_the_support_metric_charts_hold_the_apis_series(desktop, fresh, web_server, db_engine):
    _rate(web_server, fresh)
    page = _overview(desktop, fresh)
    dashboard = _dashboard(web_server, fresh)
    start, end = datetime.fromisoformat(dashboard["start"]), datetime.fromisoformat(dashboard["end"])
    _, rated = _good_share(db_engine, fresh.org_id, start, end)
    assert rated >= len(RATINGS)
    # The re-rated tickets count once, with the rating given last.
    with db_engine.connect() as conn:
        standing = conn.execute(
            text(
                "SELECT count(*) FROM ticket_ratings r JOIN tickets t ON t.id = r.ticket_id"
                " WHERE t.org_id = :org AND t.subject = 'rated' AND r.rating >= 4"
            ),
            {"org": fresh.org_id},
        ).scalar()
    assert standing == 2
    csat = _series(web_server, fresh, "csat", dashboard)
    assert sum(p["count"] for p in csat["points"]) == rated

    # Each chart holds the API's series, day by day.
    for panel, metrics in (("csat", ["csat"]), ("backlog", ["backlog"]), ("volume", ["solved"])):
        answers = [_series(web_server, fresh, m, dashboard) for m in metrics]
        days = len(dashboard["ticket_count_series"])
        assert page.get_attribute(f"#panel-{panel} .chart", "data-points") == str(days), panel
        total = sum(p["value"] or 0 for a in answers for p in a["points"])
        if panel == "volume":
            total += sum(p["count"] for p in dashboard["ticket_count_series"])
        shown = float(page.get_attribute(f"#panel-{panel} .chart", "data-total"))
        assert shown == pytest.approx(total), panel
    legend = page.locator("#panel-volume .u-legend .u-series th").all_inner_texts()
    assert [label.strip() for label in legend if label.strip()] == ["Time", "Created", "Solved"]
    screenshot(page, "overview-metrics")


def test_the_csat_tile_is_the_share_of_good_ratings_against_the_period_before(
    desktop, fresh, web_server, db_engine
):
    _rate(web_server, fresh)
    dashboard = _dashboard(web_server, fresh)
    if "csat_pct" not in dashboard["kpis"]:
        pytest.skip("this server's dashboard has no csat_pct KPI")
    page = _overview(desktop, fresh)
    start, end = datetime.fromisoformat(dashboard["start"]), datetime.fromisoformat(dashboard["end"])
    expected, _ = _good_share(db_engine, fresh.org_id, start, end)
    assert float(page.get_attribute("#tile-csat", "data-value")) == pytest.approx(expected)
    shown = page.inner_text("#tile-csat .tile-value")
    assert shown.endswith(" %")
    assert float(shown.removesuffix(" %")) == pytest.approx(expected, abs=0.005)
    previous, _ = _good_share(
        db_engine, fresh.org_id, datetime.fromisoformat(dashboard["previous_start"]), start
    )
    before = page.inner_text("#tile-csat .tile-previous").split()[1]
    if previous is None:  # no rating fell in the period before (the seed is random relative to now)
        assert before == "\N{EN DASH}", page.inner_text("#tile-csat .tile-previous")
    else:
        assert float(before) == pytest.approx(previous, abs=0.005)
