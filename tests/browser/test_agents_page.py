"""The agents page in a real browser: the report as a table equal to the API's answer, sorted by any
column, with the range picker and the minimum solved; both layouts; and a clear "not available" when a
server's API document leaves the report out or the report's route answers 404."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Route

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    Watched,
    assert_table_scrolls_sideways,
    office_and_all_hours,
    screenshot,
)
from tests.conftest import Tenant
from tests.e2e.conftest import Web

pytestmark = pytest.mark.worker

REPORT = "/api/v1/analytics/agents"
COLUMNS = [
    "agent",
    "solved",
    "first_reply_p50",
    "resolution_p50",
    "sla_compliance_pct",
    "csat_pct",
    "one_touch_pct",
    "reopen_rate",
]


@pytest.fixture
def report_served(web_server: Web) -> None:
    """The table's tests need the report: on a server whose API document lacks it they are skipped,
    saying so (what the page shows there is the "not available" tests' below)."""
    status, document = web_server.request("GET", "/api/v1/openapi.json")
    assert status == 200
    if REPORT not in document["paths"]:
        pytest.skip(f"this server's API document has no {REPORT}")


def _open(watched: Watched, tenant: Tenant, path: str) -> Page:
    watched.sign_in(tenant.users["viewer"]["email"])
    page = watched.page()
    page.goto(path)
    page.wait_for_selector("body[data-loaded]")
    return page


def _normal(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its numbers as floats, whether it came from the page's text or the API's JSON."""
    return {key: row[key] if key == "agent" or row[key] is None else float(row[key]) for key in COLUMNS}


def _shown(page: Page) -> list[dict[str, Any]]:
    """The table's rows, each cell's raw value as the page holds it."""
    rows = page.eval_on_selector_all(
        "#agents tbody tr[data-agent]",
        """rows => rows.map(row => Object.fromEntries([...row.querySelectorAll("td")].map(
            td => [td.dataset.key, td.dataset.value === "" ? null : td.dataset.value])))""",
    )
    return [_normal(row) for row in rows]


def _as_shown(row: dict[str, Any]) -> dict[str, Any]:
    return _normal(row)


def _report(page: Page, web: Web, tenant: Tenant) -> dict[str, Any]:
    """The API's answer to the query the page made."""
    query = page.get_attribute("body", "data-query")
    status, answer = web.request("GET", f"{REPORT}?{query}", tenant.users["viewer"]["token"])
    assert status == 200, answer
    return answer


def _sorted_by(rows: list[dict[str, Any]], key: str, descending: bool) -> list[str]:
    """Agents in the order of `key`, absent values last either way (written from the page's promise)."""
    present = [r for r in rows if r[key] is not None]
    absent = [r for r in rows if r[key] is None]
    number = key != "agent"
    present.sort(key=lambda r: r[key] if number else r[key].lower(), reverse=descending)
    return [r["agent"] for r in present + absent]


@pytest.mark.usefixtures("report_served")
def test_the_table_is_the_apis_report_and_sorts_by_any_column(desktop, demo, web_server):
    page = _open(desktop, demo, "/agents?period=90d&min_tickets=1")
    answer = _report(page, web_server, demo)
    assert parse_qs(page.get_attribute("body", "data-query"))["min_tickets"] == ["1"]
    assert len(answer["agents"]) >= 3
    # The API's order first: most solved first.
    assert _shown(page) == [_as_shown(row) for row in answer["agents"]]
    assert page.inner_text("#zone") == demo.timezone
    assert page.get_attribute("th:has(button[data-key=solved])", "aria-sort") == "descending"

    rows = _shown(page)
    # A new column starts with its largest (names A to Z); a second click on it turns the order.
    for key, descending in (("agent", False), ("csat_pct", True), ("csat_pct", False), ("reopen_rate", True)):
        page.click(f"button.sort[data-key={key}]")
        assert [r["agent"] for r in _shown(page)] == _sorted_by(rows, key, descending), key
        order = "descending" if descending else "ascending"
        assert page.get_attribute(f"th:has(button[data-key={key}])", "aria-sort") == order
    screenshot(page, "agents")

    # A higher minimum drops the agents below it, in the page, its URL and the API alike.
    least = sorted(row["solved"] for row in answer["agents"])[len(answer["agents"]) // 2]
    page.fill("#min_tickets", str(least))
    page.press("#min_tickets", "Enter")
    page.wait_for_url(f"**min_tickets={least}**")
    page.wait_for_function("n => document.body.dataset.query.includes('min_tickets=' + n)", arg=str(least))
    fewer = _report(page, web_server, demo)
    assert fewer["agents"] == [row for row in answer["agents"] if row["solved"] >= least]
    assert _shown(page) != rows
    assert sorted(r["agent"] for r in _shown(page)) == sorted(r["agent"] for r in fewer["agents"])


@pytest.mark.usefixtures("report_served")
def test_the_range_picker_changes_the_report(desktop, demo, web_server):
    page = _open(desktop, demo, "/agents?min_tickets=1")
    loads = int(page.get_attribute("body", "data-loaded"))
    page.select_option("#period", "7d")
    page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=loads)
    assert "period=7d" in page.url
    week = _report(page, web_server, demo)
    query = parse_qs(page.get_attribute("body", "data-query"))
    start, end = query["start"][0], query["end"][0]
    assert (date.fromisoformat(end) - date.fromisoformat(start)).days == 7
    assert _shown(page) == [_as_shown(row) for row in week["agents"]]
    assert page.inner_text("#range-note") == f"{start} to {end} (end excluded)"

    page.select_option("#period", "custom")
    page.fill("#start", "2026-01-01")
    page.fill("#end", "2026-01-31")
    page.click("#range button[type=submit]")
    page.wait_for_url("**start=2026-01-01**")
    page.wait_for_function("() => document.body.dataset.query.includes('end=2026-02-01')")
    assert _shown(page) == [_as_shown(row) for row in _report(page, web_server, demo)["agents"]]


@pytest.mark.usefixtures("report_served")
def test_the_business_clock_sends_the_schedule_the_url_or_the_select_names(desktop, fresh, web_server):
    """schedule_id in the URL goes with clock=business in the report's request; the Schedule select
    lists the organization's schedules and writes its choice into the URL; the calendar sends none."""
    _, other = office_and_all_hours(web_server, fresh)
    page = _open(desktop, fresh, f"/agents?min_tickets=1&clock=business&schedule_id={other['id']}")
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert parse_qs(page.get_attribute("body", "data-query"))["schedule_id"] == [str(other["id"])]
    assert _shown(page) == [_as_shown(row) for row in _report(page, web_server, fresh)["agents"]]
    assert page.is_visible("#schedule-field")
    assert page.eval_on_selector_all("#schedule_id option", "os => os.map(o => o.textContent)") == [
        "(default)",
        "Office hours (the default)",
        "Around the clock",
    ]
    assert page.input_value("#schedule_id") == str(other["id"])
    page.select_option("#schedule_id", "")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    assert "schedule_id" not in page.url
    assert "schedule_id" not in page.get_attribute("body", "data-query")
    page.select_option("#schedule_id", str(other["id"]))
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 3")
    assert f"schedule_id={other['id']}" in page.url
    assert f"schedule_id={other['id']}" in page.get_attribute("body", "data-query")
    page.select_option("#clock", "calendar")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 4")
    assert page.is_hidden("#schedule-field")
    assert "schedule_id" not in page.url
    assert "schedule_id" not in page.get_attribute("body", "data-query")
    assert page.is_hidden("#error"), page.inner_text("#error")


@pytest.mark.usefixtures("report_served")
def test_a_schedule_that_is_gone_is_said_and_another_can_be_chosen(desktop, fresh, web_server):
    """A bookmark of a schedule since deleted: the API's 404 names it, and the report stays on the
    page to be asked again (a 404 read as "no report on this server" hid it for good)."""
    _, other = office_and_all_hours(web_server, fresh)
    status, _ = web_server.request(
        "DELETE", f"/api/v1/schedules/{other['id']}", fresh.users["admin"]["token"]
    )
    assert status == 204
    desktop.allowed.append("status of 404")
    desktop.sign_in(fresh.users["viewer"]["email"])
    page = desktop.page()
    page.goto(f"/agents?min_tickets=1&clock=business&schedule_id={other['id']}")
    page.wait_for_selector("#error:not([hidden])")
    assert f"schedule {other['id']} not found" in page.inner_text("#error")
    assert page.is_hidden("#unavailable")
    assert page.get_attribute("body", "data-unavailable") is None
    page.select_option("#schedule_id", "")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.is_visible("#agents")


@pytest.mark.usefixtures("report_served")
@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_agents_page_fits_desktop_and_phone(request, size, viewport, demo):
    watched: Watched = request.getfixturevalue(size)
    page = _open(watched, demo, "/agents?period=90d&min_tickets=1")
    assert page.locator("#agents tbody tr[data-agent]").count() >= 3
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    right = page.eval_on_selector("#agents-panel", "el => el.getBoundingClientRect().right")
    assert right <= viewport["width"]
    if size == "phone":
        screenshot(page, "agents-phone")
        assert_table_scrolls_sideways(page, "#agents-wrap")


def _document(route: Route, *, with_report: bool) -> None:
    """The server's own API document, with or without the agents report."""
    document = route.fetch().json()
    if with_report:
        document["paths"].setdefault(REPORT, {"get": {"parameters": [], "responses": {}}})
    else:
        document["paths"].pop(REPORT, None)
    route.fulfill(json=document)


def _agents(watched: Watched, tenant: Tenant, *, with_report: bool) -> tuple[Page, list[str]]:
    watched.sign_in(tenant.users["viewer"]["email"])
    page = watched.page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if REPORT in request.url else None)
    page.route("**/api/v1/openapi.json", lambda route: _document(route, with_report=with_report))
    return page, asked


def test_without_the_report_in_the_api_document_the_page_says_it_is_not_available(desktop, fresh):
    page, asked = _agents(desktop, fresh, with_report=False)
    page.goto("/agents")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_visible("#unavailable")
    assert "not available" in page.inner_text("#unavailable")
    assert page.is_hidden("#agents")
    assert asked == [], "nothing asked of a route the API does not have"


def test_a_report_answering_404_shows_not_available(desktop, fresh, web_server):
    page, asked = _agents(desktop, fresh, with_report=True)
    # The server's real answer for a route it does not have.
    page.route(
        f"**{REPORT}?*",
        lambda route: route.continue_(url=f"{web_server.base_url}/api/v1/analytics/no-such-report"),
    )
    desktop.allowed.append("status of 404")
    page.goto("/agents")
    page.wait_for_selector("body[data-loaded]")
    assert len(asked) == 1
    assert page.is_visible("#unavailable")
    assert page.is_hidden("#agents")
    assert page.is_hidden("#error")


def test_the_last_days_are_the_organizations_days_whatever_the_browsers_zone(
    browser, web_server, demo, report_served
):
    """A browser 14 hours ahead of UTC (a day ahead of the organization most of the time) asks for
    the organization's last 7 days, and the explorer's default 30 are the organization's too."""
    context = browser.new_context(base_url=web_server.base_url, timezone_id="Pacific/Kiritimati")
    try:
        watched = Watched(context, web_server.base_url)
        page = _open(watched, demo, "/agents?period=7d")
        page.wait_for_function("() => Number(document.body.dataset.loaded) >= 1")
        status, answer = web_server.request("GET", f"{REPORT}?min_tickets=1", demo.users["viewer"]["token"])
        assert status == 200, answer
        zone = ZoneInfo(answer["timezone"])
        org_today = datetime.now(zone).date()
        query = parse_qs(page.get_attribute("body", "data-query"))
        assert query["end"] == [(org_today + timedelta(days=1)).isoformat()], (query, zone)
        assert query["start"] == [(org_today - timedelta(days=6)).isoformat()]
        # The explorer's default range ends on the organization's today too.
        page.goto("/explorer")
        page.wait_for_selector("body[data-loaded]")
        assert page.input_value("#end") == org_today.isoformat()
        assert page.input_value("#start") == (org_today - timedelta(days=29)).isoformat()
        assert not watched.problems, watched.problems
    finally:
        context.close()


@pytest.mark.usefixtures("report_served")
def test_the_keyboard_sorts_and_the_focus_stays_on_the_column_sorted(desktop, demo, web_server):
    page = _open(desktop, demo, "/agents?period=90d&min_tickets=1")
    rows = _shown(page)
    assert len(rows) >= 3
    focused = "() => [document.activeElement.tagName, document.activeElement.dataset.key]"
    page.focus("button.sort[data-key=solved]")
    # Solved is the order already (most first): Enter turns it, Enter again and Space turn it back and forth.
    for key, descending in (("Enter", False), ("Enter", True), (" ", False)):
        page.keyboard.press(key)
        assert page.evaluate(focused) == ["BUTTON", "solved"], key
        order = "descending" if descending else "ascending"
        assert page.get_attribute("th:has(button[data-key=solved])", "aria-sort") == order, key
        assert [r["agent"] for r in _shown(page)] == _sorted_by(rows, "solved", descending), key
    # Tab goes on to the next column's button, whose Enter sorts by it, keeping the focus there.
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == ["BUTTON", "first_reply_p50"]
    page.keyboard.press("Enter")
    assert page.evaluate(focused) == ["BUTTON", "first_reply_p50"]
    assert [r["agent"] for r in _shown(page)] == _sorted_by(rows, "first_reply_p50", True)
