"""The dashboard in a real browser: sign-in, tiles against the API, live updates, the explorer, exports,
layouts, the embed view and the API reference."""

from __future__ import annotations

import csv
import html
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, WebSocket

from tests.browser.conftest import (
    DESKTOP,
    PASSWORD,
    PHONE,
    Watched,
    assert_table_scrolls_sideways,
    screenshot,
)
from tests.conftest import Tenant, db_scalar

pytestmark = pytest.mark.worker

LIVE_WITHIN_SECONDS = 2.0
TILES = {
    "tickets": "ticket_count",
    "response": "avg_response_time",
    "resolution": "avg_resolution_time",
    "sentiment": "avg_sentiment_score",
}


def _overview(watched: Watched, tenant: Tenant, role: str = "viewer") -> Page:
    watched.sign_in(tenant.users[role]["email"])
    page = watched.page()
    page.goto("/")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_selector("#live[data-state=live]")
    return page


def _tile_number(page: Page, tile: str) -> int:
    return int(page.inner_text(f"#tile-{tile} .tile-value").replace(",", ""))


def _created_between(engine, org_id: int, start: datetime, end: datetime, **where: str) -> int:
    """Tickets created in [start, end), counted from the creation events (the dimensions they had then)."""
    sql = (
        "SELECT count(*) FROM ticket_events WHERE org_id = :org AND event_type = 'created'"
        " AND occurred_at >= :start AND occurred_at < :end"
    )
    for name in where:
        sql += f" AND {name} = :{name}"
    return db_scalar(engine, sql, org=org_id, start=start, end=end, **where)


def _local_days(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """[first 00:00, the day after last 00:00) in `tz`."""
    zone = ZoneInfo(tz)
    return (
        datetime.combine(first, datetime.min.time(), zone),
        datetime.combine(last + timedelta(days=1), datetime.min.time(), zone),
    )


def _frames(page: Page) -> list[tuple[str, dict]]:
    """Every WebSocket message the page receives from now on, with its socket's URL."""
    received: list[tuple[str, dict]] = []

    def follow(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: received.append((ws.url, json.loads(payload))))

    page.on("websocket", follow)
    return received


def test_sign_in_then_the_tiles_show_the_apis_numbers(desktop, demo, web_server, db_engine):
    page = desktop.page()
    page.goto("/")
    page.wait_for_url("**/signin?next=%2F")
    page.fill("#email", demo.users["viewer"]["email"])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server.base_url}/")
    page.wait_for_selector("body[data-loaded]")

    status, api = web_server.request(
        "GET", "/api/v1/analytics/dashboard?period=30d", demo.users["viewer"]["token"]
    )
    assert status == 200
    for tile, kpi in TILES.items():
        shown = page.get_attribute(f"#tile-{tile}", "data-value")
        assert float(shown) == pytest.approx(api["kpis"][kpi]["value"]), tile
    # A signed score's change is its difference: a percentage of a score near zero means nothing.
    sentiment = api["kpis"]["avg_sentiment_score"]
    change = page.inner_text("#tile-sentiment .tile-previous .change")
    assert "%" not in change
    difference = float(change.replace("\N{MINUS SIGN}", "-").replace("\N{PLUS-MINUS SIGN}", ""))
    assert difference == pytest.approx(sentiment["value"] - sentiment["previous"], abs=0.006)
    start, end = datetime.fromisoformat(api["start"]), datetime.fromisoformat(api["end"])
    created = _created_between(db_engine, demo.org_id, start, end)
    assert created > 100
    assert _tile_number(page, "tickets") == created
    previous = _created_between(db_engine, demo.org_id, datetime.fromisoformat(api["previous_start"]), start)
    assert f"previous {previous:,}" in page.inner_text("#tile-tickets .tile-previous")
    assert _tile_number(page, "backlog") == api["backlog"]["count"]
    sla = api["sla"]["overall"]["first_response"]["compliance"]
    assert float(page.get_attribute("#tile-sla-first", "data-value")) == pytest.approx(sla)
    # Each priority's bars are as long as its compliance: 100 % fills the track.
    widths = page.eval_on_selector_all(
        "#panel-sla .bar-row",
        "rows => rows.map(r => [r.dataset.key,"
        " ...Array.from(r.querySelectorAll('.bar-fill'), f => f.style.width)])",
    )
    assert widths
    for priority, first_width, resolution_width in widths:
        outcome = api["sla"]["by_priority"][priority]
        for width, kind in ((first_width, "first_response"), (resolution_width, "resolution")):
            # The browser writes a style's percentage back with a few decimals (47.619% for 47.6190...).
            assert float(width.rstrip("%")) == pytest.approx(
                outcome[kind]["compliance_pct"] or 0, abs=1e-3
            ), (
                priority,
                kind,
            )
    assert page.inner_text("#zone") == "America/New_York"
    # The channel distribution comes from its own route; its bars add up to the tickets created.
    channel_counts = page.eval_on_selector_all(
        "#panel-channel .bar-value", "els => els.map(e => parseInt(e.textContent.replace(/,/g, '')))"
    )
    assert sum(channel_counts) == created
    page.wait_for_selector("#live[data-state=live]")
    screenshot(page, "overview")


def test_an_email_of_two_organizations_signs_in_where_the_reader_chooses(
    desktop, fresh, make_live_tenant, web_server
):
    other = make_live_tenant("Browser Other")
    email = f"shared-{fresh.org_id}@example.test"
    for tenant, role in ((fresh, "viewer"), (other, "agent")):
        body = {"email": email, "password": PASSWORD, "role": role}
        status, created = web_server.request("POST", "/api/v1/users", tenant.users["admin"]["token"], body)
        assert status == 201, created
    desktop.allowed.append("status of 409")  # the browser logs the sign-in's answer that asks
    page = desktop.page()
    page.goto("/signin")
    assert page.is_hidden("#organization")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    # Both accounts take the password: the page asks which organization, naming their ids.
    page.wait_for_selector("#organization:not([hidden])")
    assert "several organizations" in page.inner_text("#error")
    options = page.eval_on_selector_all("#org_id option", "options => options.map(o => o.value)")
    assert options == [str(i) for i in sorted((fresh.org_id, other.org_id))]
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.select_option("#org_id", str(other.org_id))
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server.base_url}/")
    page.wait_for_selector("body[data-loaded]")
    # Signed in to the organization chosen: its live socket is the one opened.
    deadline = time.monotonic() + 10
    while not sockets and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sockets
    assert all(f"/ws/analytics/{other.org_id}" in url for url in sockets), sockets


def test_sign_in_never_sends_the_browser_to_another_site(desktop, demo, web_server):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    for next_ in (
        "%2F%09%2Fexample.org%2Fphish",
        "%2F%2Fexample.org",
        "%2F%5Cexample.org",
        "https%3A%2F%2Fexample.org",
        "%2F%0A%2Fexample.org",
    ):
        page.goto(f"/signin?next={next_}")
        page.wait_for_url(lambda url: "/signin" not in url)
        assert page.url == web_server.base_url + "/", (next_, page.url)
    # A path of this site is where the browser lands, and what its address bar says.
    page.goto("/signin?next=%2F%3Fperiod%3D7d")
    page.wait_for_selector("body.page-overview[data-loaded]")
    assert page.url == web_server.base_url + "/?period=7d"


def _assert_nothing_drawn(page: Page, message: str) -> None:
    """The overview settled with no figures: tiles an en dash, every panel saying `message`, no range note."""
    assert page.inner_text("#range-note") == ""
    assert set(page.locator(".tile-value").all_inner_texts()) == {"\N{EN DASH}"}
    assert page.locator("#panels .u-over").count() == 0
    assert page.locator("#panels .bar-row").count() == 0
    panels = page.locator("#panels .panel")
    assert panels.count() > 0
    assert page.locator("#panels .panel .empty").all_inner_texts() == [message] * panels.count()


def test_a_url_with_a_range_that_is_none(desktop, demo, web_server):
    """The overview and the agents page say what is wrong, ask nothing and show no figures, as the
    explorer does (tests/browser/test_explorer_page.py); a range the API refuses settles the same way."""
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/analytics/" in r.url else None)

    def refused(path: str, message: str) -> None:
        page.goto(path)
        page.wait_for_selector("body[data-refused], body[data-loaded]")
        assert page.is_visible("#error[role=alert]"), path
        assert page.inner_text("#error") == message
        assert page.url.endswith(path)

    for path, message in (
        ("/agents?start=xx&end=yy", '"From" (xx) is not a date (YYYY-MM-DD)'),
        ("/agents?period=bogus", '"Period" (bogus) is not one of 7d, 30d, 90d'),
    ):
        refused(path, message)
        assert page.inner_text("#range-note") == ""
        assert page.locator("#agents tr").count() == 0
        assert not asked, asked
    for path, message in (
        ("/?start=abc&end=def", '"From" (abc) is not a date (YYYY-MM-DD)'),
        ("/?start=2026-10-31&end=2026-10-01", '"From" (2026-10-31) must be on or before "To" (2026-10-01)'),
        ("/?period=bogus", '"Period" (bogus) is not one of 7d, 30d, 90d'),
    ):
        refused(path, message)
        _assert_nothing_drawn(page, f"No data: {message}")
        assert not asked, asked
    # A range the page takes but the API refuses: its message, and the page settles as above (no
    # tiles or panels left loading).
    desktop.allowed.append("the server responded with a status of 400")
    page.goto("/?start=1800-01-01&end=2026-01-01")
    page.wait_for_selector("body[data-refused], body[data-loaded]")
    status, refusal = web_server.request(
        "GET", "/api/v1/analytics/dashboard?start=1800-01-01&end=2026-01-02", demo.users["viewer"]["token"]
    )
    assert status == 400
    assert page.inner_text("#error") == refusal["error"]["message"]
    _assert_nothing_drawn(page, f"No data: {refusal['error']['message']}")
    # A range chosen in the form is one: asked and drawn.
    page.select_option("#period", "7d")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error")
    assert page.inner_text("#range-note")
    # The form's own fields in a URL (a submit without scripts, an old bookmark) are a range.
    page.goto("/?period=custom&start=2026-10-01&end=2026-10-31")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error")
    assert "2026-10-01" in page.inner_text("#range-note")


def test_a_url_naming_one_date_fills_the_other_as_the_explorer_does(desktop, demo):
    """A From alone runs to today (the organization's), a To alone starts 30 days before it, on the
    overview and the agents page as in the explorer; a date that is none is still said."""
    today = datetime.now(ZoneInfo(demo.timezone)).date()
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    for query, first, last in (
        ("start=2026-11-01", "2026-11-01", today.isoformat()),
        ("end=2026-11-15", "2026-10-17", "2026-11-15"),
    ):
        page.goto(f"/explorer?{query}")
        page.wait_for_selector("body[data-loaded], body[data-refused]")
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert (page.input_value("#start"), page.input_value("#end")) == (first, last), query
        note = f"{first} to {(date.fromisoformat(last) + timedelta(days=1)).isoformat()} (end excluded)"
        for path in ("/", "/agents"):
            page.goto(f"{path}?{query}")
            page.wait_for_selector("body[data-loaded], body[data-refused]")
            assert page.is_hidden("#error"), (path, query, page.inner_text("#error"))
            assert page.inner_text("#range-note") == note, (path, query)
            assert page.input_value("#period") == "custom", (path, query)
            assert (page.input_value("#start"), page.input_value("#end")) == (first, last), (path, query)
            assert page.url.endswith(f"{path}?{query}")
    page.goto("/?end=garbage")
    page.wait_for_selector("body[data-refused]")
    assert page.inner_text("#error") == '"To" (garbage) is not a date (YYYY-MM-DD)'


def test_back_and_forward_step_through_the_ranges_chosen(desktop, demo):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    for path in ("/", "/agents"):
        page.goto(path)
        page.wait_for_selector("body[data-loaded]")
        page.select_option("#period", "7d")
        page.wait_for_url("**period=7d**")
        page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
        week = page.inner_text("#range-note")
        page.go_back()
        page.wait_for_function("() => Number(document.body.dataset.loaded) >= 3")
        assert "period=7d" not in page.url, path
        assert page.input_value("#period") == "30d", path
        month = page.inner_text("#range-note")
        assert month != week, path
        page.go_forward()
        page.wait_for_function("() => Number(document.body.dataset.loaded) >= 4")
        assert page.input_value("#period") == "7d", path
        assert page.inner_text("#range-note") == week, path


def test_the_custom_range_starts_as_the_range_shown_and_says_a_missing_date(desktop, demo):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto("/?period=7d")
    page.wait_for_selector("body[data-loaded]")
    page.select_option("#period", "custom")
    today = datetime.now(ZoneInfo(demo.timezone)).date()
    assert page.input_value("#start") == (today - timedelta(days=6)).isoformat()
    assert page.input_value("#end") == today.isoformat()
    page.fill("#end", "")
    page.click("#range button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == '"To" needs a date (YYYY-MM-DD)'
    assert "period=7d" in page.url


def test_a_one_day_range_draws_its_day(desktop, demo):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    day = (date.today() - timedelta(days=3)).isoformat()

    def near_zero_sentiment(route) -> None:
        answer = route.fetch().json()
        kpi = {"value": -0.0004, "previous": -0.00003, "change_pct": -1302.76}
        answer["kpis"]["avg_sentiment_score"] = kpi
        route.fulfill(json=answer)

    page.route("**/api/v1/analytics/dashboard?*", near_zero_sentiment)
    page.goto(f"/?start={day}&end={day}")
    page.wait_for_selector("body[data-loaded]")
    # Scores that round to zero read 0.0, never -0.0, and their change is a difference, not a percentage.
    assert page.inner_text("#tile-sentiment .tile-value") == "0.0"
    assert page.inner_text("#tile-sentiment .tile-previous") == "previous 0.0 · \N{PLUS-MINUS SIGN}0.0"
    page.wait_for_selector(".u-over")
    # One bucket on the time axis: a day around it, not years.
    spans = page.eval_on_selector_all("[data-span]", "charts => charts.map(c => Number(c.dataset.span))")
    assert spans
    assert all(0 < span <= 2 * 86_400 for span in spans), spans


def test_a_ticket_created_through_the_api_updates_a_tile_live(desktop, fresh, web_server):
    page = _overview(desktop, fresh)
    page.evaluate("window.sameDocument = true")
    before = _tile_number(page, "tickets")
    urgent_before = page.inner_text("#panel-priority .bar-row[data-key=urgent] .bar-value")
    started = time.monotonic()
    status, _ = web_server.request(
        "POST", "/api/v1/tickets", fresh.users["agent"]["token"], {"subject": "live", "priority": "urgent"}
    )
    assert status == 201
    page.wait_for_function(
        "n => document.querySelector('#tile-tickets .tile-value').textContent === n",
        arg=f"{before + 1:,}",
        timeout=LIVE_WITHIN_SECONDS * 1000,
    )
    assert time.monotonic() - started < LIVE_WITHIN_SECONDS
    assert page.evaluate("window.sameDocument") is True  # no reload
    urgent = page.inner_text("#panel-priority .bar-row[data-key=urgent] .bar-value")
    assert urgent != urgent_before


def test_a_status_change_moves_the_status_panel_live(desktop, fresh, web_server):
    status, ticket = web_server.request(
        "POST", "/api/v1/tickets", fresh.users["agent"]["token"], {"subject": "s"}
    )
    assert status == 201
    page = _overview(desktop, fresh)
    on_hold = int(page.inner_text("#panel-status .bar-row[data-key=on_hold] .bar-value").split(" ")[0])
    status, _ = web_server.request(
        "PATCH", f"/api/v1/tickets/{ticket['id']}", fresh.users["agent"]["token"], {"status": "on_hold"}
    )
    assert status == 200
    page.wait_for_function(
        "n => document.querySelector('#panel-status .bar-row[data-key=on_hold] .bar-value')"
        ".textContent.startsWith(n + ' ')",
        arg=str(on_hold + 1),
        timeout=LIVE_WITHIN_SECONDS * 1000,
    )


def test_a_lost_socket_reconnects_and_resumes_from_its_last_event(desktop, fresh, web_server):
    page = _overview(desktop, fresh)
    frames = _frames(page)
    before = _tile_number(page, "tickets")
    desktop.context.set_offline(True)
    page.wait_for_selector("#live[data-state=offline]")
    status, ticket = web_server.request(
        "POST", "/api/v1/tickets", fresh.users["agent"]["token"], {"subject": "while away"}
    )
    assert status == 201
    desktop.context.set_offline(False)
    page.wait_for_selector("#live[data-state=live]")
    page.wait_for_function(
        "n => document.querySelector('#tile-tickets .tile-value').textContent === n", arg=f"{before + 1:,}"
    )
    # The new socket asked to resume, and the event of the change made while away came through it.
    resumed = [(url, m) for url, m in frames if m["type"] == "metric_update"]
    assert resumed, frames
    url, message = resumed[0]
    assert parse_qs(urlsplit(url).query)["last_event_id"]
    assert message["data"]["ticket_id"] == ticket["id"]


def test_sign_out_ends_the_session(desktop, fresh, web_server):
    page = _overview(desktop, fresh)
    page.click("#signout")
    page.wait_for_url("**/signin")
    page.goto("/explorer")
    page.wait_for_url("**/signin?next=%2Fexplorer")
    # The browser holds no session cookie any more (the server's revocation of both tokens is
    # tests/integration/test_web_session.py's).
    assert not any(c["name"] == "dashboard_refresh" for c in desktop.context.cookies())
    assert page.evaluate("() => document.cookie") == ""
    # Signed in again from a deep link: the page asked for is shown under its own address.
    page.goto("/agents?period=7d")
    page.wait_for_url("**/signin?next=%2Fagents%3Fperiod%3D7d")
    page.fill("#email", fresh.users["viewer"]["email"])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body.page-agents[data-loaded]")
    assert page.url == f"{web_server.base_url}/agents?period=7d"


def test_a_filter_changes_the_chart_and_the_url(desktop, demo, db_engine):
    last = datetime.now(ZoneInfo(demo.timezone)).date()
    first = last - timedelta(days=59)
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto(f"/explorer?start={first}&end={last}")
    page.wait_for_selector("body[data-loaded]")
    start, end = _local_days(first, last, demo.timezone)
    assert int(page.get_attribute("#chart", "data-total")) == _created_between(
        db_engine, demo.org_id, start, end
    )
    assert page.get_attribute("#chart", "data-points") == "60"
    assert page.locator("#table tbody tr").count() == 60

    page.check("input[name=f-priority][value=high]")
    page.wait_for_url("**priority=high**")
    high = _created_between(db_engine, demo.org_id, start, end, priority="high")
    page.wait_for_function("n => document.querySelector('#chart').dataset.total === n", arg=str(high))
    assert "priority=high" in page.inner_text("#curl")
    assert "$TOKEN" in page.inner_text("#curl")

    # A reload of that URL shows the same query.
    page.reload()
    page.wait_for_selector("body[data-loaded]")
    assert page.is_checked("input[name=f-priority][value=high]")
    assert page.get_attribute("#chart", "data-total") == str(high)

    # A filter box reads as a query string's list (README): a value holding a comma in double quotes
    # is one value, and the JSON body has the list, as the curl line shows.
    category = urlencode({"category": '"returns, damaged",billing'})
    with page.expect_request(lambda r: r.url.endswith("/analytics/aggregations")) as asked:
        page.goto(
            f"/explorer?metric=response_time&granularity=weekly&start={first}&end={last}&percentiles=50,90&{category}"
        )
    assert asked.value.post_data_json["filters"] == {"category": ["returns, damaged", "billing"]}
    page.wait_for_selector("body[data-loaded]")
    assert page.locator("#table thead th").all_inner_texts()[:3] == ["bucket", "count", "avg"]
    assert "p90" in page.locator("#table thead th").all_inner_texts()
    assert '"category":["returns, damaged","billing"]' in page.inner_text("#curl")
    box = "input[name=f-category]"
    assert page.input_value(box) == '"returns, damaged",billing'
    assert page.is_visible("#filters-hint")
    assert "double quotes" in page.inner_text("#filters-hint")
    assert page.get_attribute(box, "aria-describedby") == "filters-hint"
    with page.expect_request(lambda r: r.url.endswith("/analytics/aggregations")) as asked:
        page.fill(box, 'returns, "a ""b"", c"')
        page.dispatch_event(box, "change")
    assert asked.value.post_data_json["filters"] == {"category": ["returns", 'a "b", c']}
    page.wait_for_function("() => document.querySelector('#curl').textContent.includes('returns')")
    assert '"category":["returns","a \\"b\\", c"]' in page.inner_text("#curl")
    screenshot(page, "explorer")


def test_hourly_rows_of_a_repeated_hour_say_their_offsets_and_a_reversed_range_its_dates(desktop, demo):
    """America/New_York's 2026-11-01 holds 01:00 twice: the explorer's table tells the two apart by
    their UTC offsets, as the API's buckets do; To before From is said in the user's own dates."""
    assert demo.timezone == "America/New_York"
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto("/explorer?granularity=hourly&start=2026-11-01&end=2026-11-01")
    page.wait_for_selector("body[data-loaded]")
    labels = page.locator("#table tbody tr td:first-child").all_inner_texts()
    assert len(labels) == 25
    minus = "\N{MINUS SIGN}"
    assert labels[1:3] == [f"2026-11-01 01:00 {minus}04:00", f"2026-11-01 01:00 {minus}05:00"]
    assert len(set(labels)) == 25

    # Each page has one heading for screen readers, and the keyboard's first stop skips to it.
    assert page.locator("h1").all_inner_texts() == ["Explorer"]
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    page.fill("input[name=start]", "2026-11-05")
    page.dispatch_event("input[name=start]", "change")
    page.wait_for_selector("#error:not([hidden])")
    assert '"From" (2026-11-05) must be on or before "To" (2026-11-01)' in page.inner_text("#error")


def test_an_export_shows_progress_and_its_link_downloads(desktop, demo, db_engine):
    last = datetime.now(ZoneInfo(demo.timezone)).date()
    first = last - timedelta(days=13)
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    frames = _frames(page)
    page.goto(f"/explorer?start={first}&end={last}&channel=email")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_selector("#live[data-state=live]")
    page.select_option("#export-format", "csv")
    page.click("#export-start")
    page.wait_for_selector("#export-link:not([hidden])", timeout=30_000)
    assert page.eval_on_selector("#export-progress", "p => p.value") == 1
    updates = [m["data"] for _, m in frames if m["type"] == "job_update" and m["data"]["kind"] == "export"]
    assert updates, "the progress came over the socket"
    assert updates[-1]["state"] == "succeeded"

    with page.expect_download() as download:
        page.click("#export-link")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert len(rows) == 14
    start, end = _local_days(first, last, demo.timezone)
    assert sum(int(row["count"]) for row in rows) == _created_between(
        db_engine, demo.org_id, start, end, channel="email"
    )


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_layouts_fit_desktop_and_phone(request, size, viewport, demo):
    watched: Watched = request.getfixturevalue(size)
    watched.sign_in(demo.users["viewer"]["email"])
    page = watched.page()
    for path in ("/", "/explorer"):
        page.goto(path)
        page.wait_for_selector("body[data-loaded]")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], path
        for box in page.eval_on_selector_all(
            ".panel, .tile", "els => els.map(e => e.getBoundingClientRect().right)"
        ):
            assert box <= viewport["width"], path
    page.goto("/")
    page.wait_for_selector("body[data-loaded]")
    rows = {
        round(top) for top in page.eval_on_selector_all("#tiles .tile", "els => els.map(e => e.offsetTop)")
    }
    panel_lefts = {
        round(x) for x in page.eval_on_selector_all("#panels .panel", "els => els.map(e => e.offsetLeft)")
    }
    if size == "desktop":
        assert len(rows) == 1  # every tile in one row
        assert len(panel_lefts) == 2  # panels in two columns
    else:
        assert len(rows) >= 4  # two tiles a row at most
        assert len(panel_lefts) == 1  # panels stacked
    # Each chart is an image with words (a canvas says nothing to a screen reader), as the explorer's.
    charts = page.eval_on_selector_all(
        "#panels .chart", "els => els.map(e => [e.getAttribute('role'), e.getAttribute('aria-label')])"
    )
    assert charts
    assert all(role == "img" for role, _ in charts), charts
    assert ["img", "Tickets per day: daily line chart of Created, Solved"] in charts
    if size == "phone":
        screenshot(page, "overview-phone")
        page.goto("/explorer?granularity=hourly")
        page.wait_for_selector("body[data-loaded]")
        assert_table_scrolls_sideways(page, "#table-wrap")


class _FramingPage(BaseHTTPRequestHandler):
    """Another site's page that frames the URL in its `src` parameter."""

    def do_GET(self) -> None:
        src = parse_qs(urlsplit(self.path).query).get("src")
        if src is None:  # the browser's /favicon.ico
            self.send_response(204)
            self.end_headers()
            return
        body = (
            f'<!doctype html><iframe src="{html.escape(src[0])}" width="1000" height="600"></iframe>'.encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def framing_site() -> Iterator[int]:
    """A loopback web server of another origin (Chromium lets only loopback pages frame loopback ones)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FramingPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_embed_view_keeps_its_filters_locked(desktop, demo, web_server, db_engine, framing_site):
    # One server, two origins: the link allows the first only.
    allowed, other = f"http://127.0.0.1:{framing_site}", f"http://localhost:{framing_site}"
    status, link = web_server.request(
        "POST",
        "/api/v1/embed-tokens",
        demo.users["admin"]["token"],
        {
            "view": "overview",
            "filters": {"priority": "urgent"},
            "expires_in": 600,
            "frame_ancestors": [allowed],
        },
    )
    assert status == 201, link
    page = desktop.page()  # no session in this browser
    page.goto(link["url"])
    page.wait_for_selector("body[data-loaded]")
    assert page.inner_text("#locked") == "priority: urgent"
    status, api = web_server.request(
        "GET", "/api/v1/analytics/dashboard?period=30d", demo.users["viewer"]["token"]
    )
    start, end = datetime.fromisoformat(api["start"]), datetime.fromisoformat(api["end"])
    urgent = _created_between(db_engine, demo.org_id, start, end, priority="urgent")
    assert _tile_number(page, "tickets") == urgent
    assert page.locator("input[type=checkbox], input[type=text]").count() == 0

    # Neither the page nor its reads accept another filter.
    assert desktop.context.request.get(link["url"] + "?priority=low").status == 403
    desktop.allowed.append("status of 403")
    refused = page.evaluate("fetch(location.pathname + '/api/dashboard?priority=low').then(r => r.status)")
    assert refused == 403
    assert _tile_number(page, "tickets") == urgent
    # An altered link opens a page saying so, which names its icon (no request for /favicon.ico, whose
    # 404 the browser would log).
    asked: list[str] = []
    page.on("request", lambda r: asked.append(urlsplit(r.url).path))
    page.goto(link["url"] + "x")
    assert page.inner_text("h1") == "This view is not available"
    page.wait_for_function("() => document.readyState === 'complete'")
    page.wait_for_timeout(300)
    assert "/favicon.ico" not in asked, asked

    # Framed by the allowed origin it shows; by another, the browser refuses to draw it.
    query = urlencode({"src": link["url"]})
    page.goto(f"{allowed}/?{query}")
    page.frame_locator("iframe").locator("body[data-loaded]").wait_for()
    desktop.allowed.append("frame-ancestors")
    page.goto(f"{other}/?{query}")
    page.wait_for_timeout(1000)
    assert page.frame_locator("iframe").locator("#tiles").count() == 0


def test_the_api_reference_is_interactive(desktop, web_server):
    page = desktop.page()
    page.goto("/api/v1/docs")
    page.wait_for_selector(".opblock")
    status, spec = web_server.request("GET", "/api/v1/openapi.json")
    assert status == 200
    operations = sum(len(item) for item in spec["paths"].values())
    assert page.locator(".opblock").count() == operations
    page.click(".opblock-summary:has(.opblock-summary-path[data-path='/api/v1/ping'])")
    page.click("button.try-out__btn")
    page.click("button.execute")
    page.wait_for_selector(".live-responses-table tbody .response-col_status")
    assert "200" in page.inner_text(".live-responses-table tbody .response-col_status")


def test_a_late_answer_for_an_earlier_range_never_replaces_the_range_chosen_since(desktop, demo):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto("/")
    page.wait_for_selector("body[data-loaded]")
    held = []
    # The 90-day answer is held back until the 7-day one has been drawn.
    page.route("**/api/v1/analytics/dashboard?period=90d*", lambda route: held.append(route))
    page.select_option("#period", "90d")
    page.wait_for_function("() => true")
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the 90-day request was not made"
    page.select_option("#period", "7d")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    week_note, week_tickets = page.inner_text("#range-note"), page.inner_text("#tile-tickets .tile-value")
    held[0].continue_()
    page.wait_for_timeout(1500)  # time for the late answer to arrive (and, before, to be drawn)
    assert page.input_value("#period") == "7d"
    assert page.inner_text("#range-note") == week_note
    assert page.inner_text("#tile-tickets .tile-value") == week_tickets
    assert page.evaluate("document.body.dataset.loaded") == "2"


def _assert_in_view(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= DESKTOP["height"], box


def test_a_failed_request_is_said_under_the_controls_and_dims_the_older_results(desktop, demo, web_server):
    desktop.allowed.append("the server responded with a status of 400")
    desktop.allowed.append("the server responded with a status of 401")
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto("/?period=7d")
    page.wait_for_selector("body[data-loaded]")
    # A custom range that ends before it starts: said at once, and no step in the history.
    page.select_option("#period", "custom")
    page.fill("#start", "2026-11-26")
    page.fill("#end", "2026-11-20")
    page.click("#range button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "must be on or before" in page.inner_text("#error")
    assert "period=7d" in page.url
    _assert_in_view(page, "#error")
    # A request the server refuses: its message under the controls, the older results dimmed.
    page.route(
        "**/api/v1/analytics/dashboard?period=30d*",
        lambda route: route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": {"code": "bad_request", "message": "refused here", "details": {}}}),
        ),
    )
    page.select_option("#period", "30d")
    page.wait_for_function("() => document.querySelector('#error').textContent === 'refused here'")
    assert page.evaluate("document.querySelector('main').classList.contains('stale')")
    _assert_in_view(page, "#error")
    page.unroute("**/api/v1/analytics/dashboard?period=30d*")
    page.select_option("#period", "7d")
    page.wait_for_selector("#error", state="hidden")
    assert not page.evaluate("document.querySelector('main').classList.contains('stale')")
    # An access token expired under the page: the session is renewed, the request asked again and
    # the new range's answer drawn, never the older numbers under the new label.
    week_note, loaded = page.inner_text("#range-note"), int(page.evaluate("document.body.dataset.loaded"))
    expired = json.dumps({"error": {"code": "token_expired", "message": "token has expired", "details": {}}})
    page.route(
        "**/api/v1/analytics/dashboard?period=30d*",
        lambda route: route.fulfill(status=401, content_type="application/json", body=expired),
        times=1,
    )
    with page.expect_response("**/web/session/refresh") as refreshed:
        page.select_option("#period", "30d")
    assert refreshed.value.status == 200
    page.wait_for_function("n => Number(document.body.dataset.loaded) > n", arg=loaded, timeout=5000)
    token = demo.users["viewer"]["token"]
    month = web_server.request("GET", "/api/v1/analytics/dashboard?period=30d", token)[1]
    assert page.inner_text("#range-note").startswith(month["start"][:10]), week_note
    assert page.get_attribute("#tile-tickets", "data-value") == str(month["kpis"]["ticket_count"]["value"])
    assert page.is_hidden("#error")


def test_a_pushed_sla_breach_redraws_the_sla_figures(desktop, fresh, web_server, base_app):
    policy_status, policy = web_server.request("GET", "/api/v1/sla-policy", fresh.users["admin"]["token"])
    assert policy_status == 200, policy
    target = timedelta(hours=policy["targets"]["urgent"]["first_reply_hours"])
    page = _overview(desktop, fresh)
    # An urgent ticket whose first-reply target runs out two seconds from now.
    status, _ = web_server.request(
        "POST",
        "/api/v1/tickets",
        fresh.users["agent"]["token"],
        {
            "subject": "about to breach",
            "priority": "urgent",
            "created_at": (datetime.now(ZoneInfo("UTC")) - target + timedelta(seconds=2)).isoformat(),
        },
    )
    assert status == 201
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    before = page.inner_text("#tile-sla-first .tile-value")
    time.sleep(2.5)
    # Beat's sweep, run now on the worker.
    sweep = base_app.extensions["celery"].send_task("sla.record_breaches", kwargs={"org_ids": [fresh.org_id]})
    assert sweep.get(timeout=60)["pushed"] >= 1
    page.wait_for_function(
        "before => document.querySelector('#tile-sla-first .tile-value').textContent !== before",
        arg=before,
        timeout=5000,
    )
    status, answer = web_server.request(
        "GET", "/api/v1/analytics/dashboard?period=30d", fresh.users["viewer"]["token"]
    )
    assert status == 200
    shown = float(page.get_attribute("#tile-sla-first", "data-value"))
    assert shown == pytest.approx(answer["sla"]["overall"]["first_response"]["compliance"])


def test_the_header_shows_the_organizations_zone_for_every_role(desktop, demo):
    # The header is one script on every page (shell.js): every page for the viewer (whose header
    # once had no zone), the overview for the other roles.
    for role, paths in (
        ("viewer", ("/", "/explorer", "/agents", "/alerts")),
        ("agent", ("/",)),
        ("admin", ("/alerts",)),
    ):
        desktop.sign_in(demo.users[role]["email"])
        for path in paths:
            page = desktop.page()
            page.goto(path)
            page.wait_for_selector("body[data-loaded]")
            assert page.inner_text("header #zone") == demo.timezone, (role, path)
            page.close()
