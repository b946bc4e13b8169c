"""The explorer in a real browser: a group-by draws every metric's value per group and bucket (as the
ungrouped view does), and a range that is none, from the URL or the form, is said, asks nothing and
leaves no chart, table or curl line of another range under it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Request

from tests.browser.conftest import Watched, office_and_all_hours
from tests.conftest import Tenant
from tests.e2e.conftest import Web

pytestmark = pytest.mark.worker

AGGREGATIONS = "/api/v1/analytics/aggregations"


def _value(stats: dict[str, Any]) -> float | None:
    """A cell's value as the contract gives a time series' point: a counting metric's own value (backlog,
    net_flow), else its count (ticket_count, solved, reopens); a measured metric's mean."""
    if "value" in stats:
        return stats["value"]
    if "avg" in stats:
        return stats["avg"]
    return stats["count"]


def _number(text: str) -> float | None:
    text = text.strip()
    return None if text == "\N{EN DASH}" else float(text.replace(",", "").replace("\N{MINUS SIGN}", "-"))


def _table(page: Page) -> tuple[list[str], list[list[str]]]:
    head = page.locator("#table thead th").all_inner_texts()
    rows = page.eval_on_selector_all(
        "#table tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.textContent))"
    )
    return head, rows


def _analytics_requests(page: Page) -> list[str]:
    made: list[str] = []

    def seen(request: Request) -> None:
        if "/api/v1/analytics/" in request.url:
            made.append(request.url)

    page.on("request", seen)
    return made


def test_a_group_by_draws_each_metrics_value_per_group_and_bucket(desktop, demo: Tenant, web_server: Web):
    last = datetime.now(ZoneInfo(demo.timezone)).date()
    first = last - timedelta(days=89)
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto("/explorer")
    page.wait_for_selector("body[data-loaded]")
    offered = page.eval_on_selector_all("#metric option", "options => options.map(o => o.value)")
    for counting in ("ticket_count", "solved", "reopens", "net_flow", "backlog"):
        assert counting in offered
    token = demo.users["viewer"]["token"]
    checked = []
    for metric in offered:
        body = {
            "metrics": [metric],
            "group_by": ["priority"],
            "filters": {},
            "start": first.isoformat(),
            "end": (last + timedelta(days=1)).isoformat(),
            "granularity": "monthly",
        }
        status, answer = web_server.request("POST", AGGREGATIONS, token, body)
        if status != 200:
            continue  # not an aggregation metric: the page says so (another test's)
        checked.append(metric)
        cells = [(row["group"]["priority"], row[metric]) for row in answer["rows"]]
        counting = all("avg" not in stats for _, stats in cells)
        query = {"metric": metric, "granularity": "monthly", "start": first, "end": last}
        query["group_by"] = "priority"
        page.goto(f"/explorer?{urlencode(query)}")
        page.wait_for_selector("body[data-loaded]")
        assert page.is_hidden("#error"), (metric, page.inner_text("#error"))
        head, rows = _table(page)
        assert len(rows) == len(cells), metric
        expected = [_value(stats) for _, stats in cells]
        total = sum(v for v in expected if v is not None)
        assert float(page.get_attribute("#chart", "data-total")) == pytest.approx(total, abs=0.01), metric
        # One line a group, each with a value wherever the API has one.
        buckets = {row["bucket"] for row in answer["rows"]}
        assert int(page.get_attribute("#chart", "data-points")) == len(buckets), metric
        assert page.locator("#chart .u-over").count() == 1, metric
        column = head.index("value") if counting else head.index("avg")
        assert head[:2] == ["group", "bucket"], (metric, head)
        for (group, stats), row, value in zip(cells, rows, expected, strict=True):
            assert row[0] == group, metric
            shown = _number(row[column])
            if value is None:
                assert shown is None, (metric, row)
            else:
                assert shown == pytest.approx(value, abs=0.01), (metric, row, stats)
            if counting:
                assert _number(row[head.index("count")]) == stats["count"], (metric, row)
        if counting:
            # The groups' values add up to the ungrouped series' (the view that already drew them right).
            series_query = {"granularity": "monthly", "start": first, "end": last + timedelta(days=1)}
            status, series = web_server.request(
                "GET", f"/api/v1/analytics/time-series/{metric}?{urlencode(series_query)}", token
            )
            assert status == 200, series
            if metric != "backlog":  # a ticket's backlog priority is its priority then, not its creation's
                assert total == sum(p["value"] for p in series["points"]), metric
    assert {"ticket_count", "solved", "reopens", "net_flow", "backlog"} <= set(checked)


def test_an_aggregation_with_no_rows_says_so_in_its_table(desktop, demo: Tenant):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    query = {"metric": "ticket_count", "granularity": "monthly", "group_by": "priority"}
    page.goto(f"/explorer?{urlencode({**query, 'category': 'no-such-category'})}")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error"), page.inner_text("#error")
    head, rows = _table(page)
    assert head[:2] == ["group", "bucket"]
    assert rows == [["No data in this range"]]


def test_the_repro_of_net_flow_by_priority_shows_its_value_not_its_events(
    desktop, demo: Tenant, web_server: Web
):
    query = {"metric": "net_flow", "granularity": "monthly", "start": "2026-09-01", "end": "2026-11-30"}
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    page.goto(f"/explorer?{urlencode({**query, 'group_by': 'priority'})}")
    page.wait_for_selector("body[data-loaded]")
    body = {
        "metrics": ["net_flow"],
        "group_by": ["priority"],
        "filters": {},
        "start": "2026-09-01",
        "end": "2026-12-01",
        "granularity": "monthly",
    }
    status, answer = web_server.request("POST", AGGREGATIONS, demo.users["viewer"]["token"], body)
    assert status == 200, answer
    head, rows = _table(page)
    assert head == ["group", "bucket", "value", "count"]
    assert [_number(row[2]) for row in rows] == [row["net_flow"]["value"] for row in answer["rows"]]
    assert [_number(row[3]) for row in rows] == [row["net_flow"]["count"] for row in answer["rows"]]
    legend = page.inner_text("#chart .u-legend")
    for priority in {row["group"]["priority"] for row in answer["rows"]}:
        assert priority in legend
    total = sum(row["net_flow"]["value"] for row in answer["rows"])
    assert float(page.get_attribute("#chart", "data-total")) == total


def _assert_refused(page: Page, message: str, made: list[str]) -> None:
    assert page.is_visible("#error")
    assert page.inner_text("#error") == message
    assert page.inner_text("#curl") == ""
    assert page.locator("#table tbody tr").count() == 0
    assert page.locator("#chart .u-over").count() == 0
    assert page.get_attribute("#chart", "data-points") == "0"
    assert not made, made


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "metric=ticket_count&granularity=daily&start=2026-12-05&end=2026-11-01",
            '"From" (2026-12-05) must be on or before "To" (2026-11-01)',
        ),
        ("metric=ticket_count&start=garbage&end=2026-11-01", '"From" (garbage) is not a date (YYYY-MM-DD)'),
        ("start=garbage", '"From" (garbage) is not a date (YYYY-MM-DD)'),
        ("end=garbage", '"To" (garbage) is not a date (YYYY-MM-DD)'),
        ("start=2026-02-30&end=2026-03-01", '"From" (2026-02-30) is not a date (YYYY-MM-DD)'),
        # The API takes whole percentiles from 1 to 99: the entry that is not one is named.
        (
            "metric=avg_response_time&start=2026-11-01&end=2026-11-10&percentiles=50,abc",
            'percentiles: "abc" is not a whole number from 1 to 99',
        ),
    ],
)
def test_a_bad_range_in_the_url_is_said_and_asks_nothing(desktop: Watched, demo: Tenant, query, message):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    made = _analytics_requests(page)
    page.goto(f"/explorer?{query}")
    # Drawn (some range) or refused (this one): either way, what the page did is there to read.
    page.wait_for_selector("body[data-loaded], body[data-refused]")
    _assert_refused(page, message, made)
    # The URL is the user's own: nothing else is shown under it.
    assert page.url.endswith(f"/explorer?{query}")
    # An export of a range that is none is refused in the same words, before any request.
    page.click("#export-start")
    page.wait_for_function("m => document.querySelector('#export-state').textContent === m", arg=message)
    assert not made, made


def test_a_bad_range_from_the_form_is_said_as_from_the_url_and_clears_the_older_results(
    desktop: Watched, demo: Tenant
):
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    good = "/explorer?metric=ticket_count&granularity=daily&start=2026-11-01&end=2026-11-10"
    page.goto(good)
    page.wait_for_selector("body[data-loaded]")
    assert page.locator("#table tbody tr").count() == 10
    curl = page.inner_text("#curl")
    assert "start=2026-11-01" in curl
    made = _analytics_requests(page)
    page.fill("input[name=start]", "2026-12-05")
    page.dispatch_event("input[name=start]", "change")
    page.wait_for_selector("#error:not([hidden])")
    _assert_refused(page, '"From" (2026-12-05) must be on or before "To" (2026-11-10)', made)
    # The bad range is not written into the URL: it keeps the last query shown.
    assert page.url.endswith(good)
    assert not page.evaluate("document.querySelector('main').classList.contains('stale')")
    # A good range again: asked, drawn, and in the URL and the curl line; its first answer is a 401
    # of an access token expired meanwhile: the session is renewed and the request asked again.
    desktop.allowed.append("status of 401")
    expired = {"error": {"code": "token_expired", "message": "token has expired", "details": {}}}
    page.route(
        "**/api/v1/analytics/time-series/**",
        lambda route: route.fulfill(status=401, json=expired),
        times=1,
    )
    page.fill("input[name=start]", "2026-11-03")
    with page.expect_response("**/web/session/refresh") as refreshed:
        page.dispatch_event("input[name=start]", "change")
    assert refreshed.value.status == 200
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    assert page.is_hidden("#error")
    assert page.locator("#table tbody tr").count() == 8
    assert "start=2026-11-03" in page.url
    assert "start=2026-11-03" in page.inner_text("#curl")
    assert made
    # Each query run is a step of the history: Back shows the one before (controls and results),
    # Forward the one after, never another page.
    page.go_back()
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 3")
    assert page.url.endswith(good)
    assert page.input_value("input[name=start]") == "2026-11-01"
    assert page.locator("#table tbody tr").count() == 10
    assert "start=2026-11-01" in page.inner_text("#curl")
    page.go_forward()
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 4")
    assert "start=2026-11-03" in page.url
    assert page.input_value("input[name=start]") == "2026-11-03"
    assert page.locator("#table tbody tr").count() == 8
    # Enter in a filter box runs the query once: the box's change and the form's submit both fire.
    made.clear()
    box = page.locator("#filters input[type=text]").first
    box.fill("email")
    box.press("Enter")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 5")
    page.wait_for_timeout(600)
    assert len([url for url in made if "/time-series/" in url]) == 1, made
    # Percentiles typed that the API does not take: said, naming the entry; nothing asked, no curl
    # line, and the URL keeps the last query shown.
    made.clear()
    shown = page.url
    for typed, entry in (("abc", "abc"), ("50, 100", "100"), ("95.5", "95.5")):
        page.fill("input[name=percentiles]", typed)
        page.dispatch_event("input[name=percentiles]", "change")
        message = f'percentiles: "{entry}" is not a whole number from 1 to 99'
        page.wait_for_function("m => document.querySelector('#error').textContent === m", arg=message)
        _assert_refused(page, message, made)
        assert page.url == shown


def _chart(page: Page, query: dict[str, Any]) -> dict[str, Any]:
    page.goto(f"/explorer?{urlencode(query)}")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error"), page.inner_text("#error")
    page.wait_for_selector("#chart[data-time-labels]")
    return page.eval_on_selector(
        "#chart",
        "el => ({labels: JSON.parse(el.dataset.timeLabels),"
        " y: el.dataset.yRange && JSON.parse(el.dataset.yRange),"
        " isolated: Number(el.dataset.isolated1 || 0)})",
    )


def test_daily_charts_label_dates_hourly_ones_a_24_hour_clock_and_percentages_stay_on_0_to_100(
    desktop, demo: Tenant
):
    last = datetime.now(ZoneInfo(demo.timezone)).date()
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    week = {"granularity": "daily", "start": last - timedelta(days=6), "end": last}
    daily = _chart(page, {"metric": "csat", **week})
    assert daily["labels"], daily
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", label) for label in daily["labels"]), daily
    assert daily["y"] == [0, 100], daily
    hourly = _chart(page, {"metric": "response_time", **week, "granularity": "hourly"})
    for label in hourly["labels"]:
        assert re.fullmatch(r"\d\d:\d\d(\n\d{4}-\d\d-\d\d)?", label), hourly
        assert not re.search(r"am|pm", label, re.I), hourly


def test_a_value_with_no_value_either_side_is_drawn_as_a_point(desktop, fresh: Tenant):
    last = datetime.now(ZoneInfo(fresh.timezone)).date()
    desktop.sign_in(fresh.users["viewer"]["email"])
    page = desktop.page()
    query = {
        "metric": "response_time",
        "granularity": "hourly",
        "start": last - timedelta(days=20),
        "end": last,
    }
    chart = _chart(page, query)
    values = [
        _number(row[1])
        for row in page.eval_on_selector_all(
            "#table tbody tr",
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.textContent))",
        )
    ]
    alone = sum(
        1
        for i, v in enumerate(values)
        if v is not None
        and (i == 0 or values[i - 1] is None)
        and (i == len(values) - 1 or values[i + 1] is None)
    )
    assert alone > 0, "the organization's sparse hours have no lone value to draw"
    assert chart["isolated"] == alone, (chart, alone)


def _padding(count: int) -> list[str]:
    """`count` category values of about 70 characters that no ticket has (no comma: one value each)."""
    return [f"a category that no ticket has and long enough to fill the address {i:03}" for i in range(count)]


def test_filters_too_long_for_a_url_are_asked_in_a_body_and_kept_out_of_the_address(
    desktop: Watched, demo: Tenant, web_server: Web
):
    """60 category values of ~70 characters (the API takes 100 of 200) make a GET whose request line
    a server refuses (414): the page asks the same series through POST aggregations, draws the same
    table, writes that request as its curl line, and keeps the long query out of the address (a
    reload or bookmark of it would be the server's 414), saying so."""
    last = datetime.now(ZoneInfo(demo.timezone)).date()
    status, categories = web_server.request(
        "GET", "/api/v1/analytics/distribution/category", demo.users["viewer"]["token"]
    )
    assert status == 200, categories
    real = [v["value"] for v in categories["values"] if v["value"]][:2]
    assert real, categories
    desktop.sign_in(demo.users["viewer"]["email"])
    page = desktop.page()
    responses: list[tuple[str, int, str]] = []
    page.on("response", lambda r: responses.append((r.request.method, r.status, r.url)))
    for metric in ("ticket_count", "response_time", "csat"):
        short = {
            "metric": metric,
            "granularity": "weekly",
            "start": last - timedelta(days=60),
            "end": last,
            "category": ",".join(real),
        }
        page.goto(f"/explorer?{urlencode(short)}")
        page.wait_for_selector("body[data-loaded]")
        shown = page.url
        expected = _table(page)
        title = page.inner_text("#chart-title")
        points = page.get_attribute("#chart", "data-points")
        total = page.get_attribute("#chart", "data-total")
        responses.clear()
        box = page.locator("input[name=f-category]")
        box.fill(",".join([*real, *_padding(60)]))
        box.press("Enter")
        page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
        assert page.is_hidden("#error"), page.inner_text("#error")
        asked = [(method, status, url) for method, status, url in responses if "/api/v1/analytics/" in url]
        assert asked
        assert all(method == "POST" and url.endswith(AGGREGATIONS) for method, _, url in asked), asked
        assert all(status == 200 for _, status, _ in asked), asked
        assert not [r for r in responses if r[1] == 414], responses
        # The same table (the same buckets, values and counts) and chart as the short GET's.
        assert _table(page) == expected, metric
        assert page.get_attribute("#chart", "data-points") == points
        assert page.get_attribute("#chart", "data-total") == total
        # The same unit: hours keep their suffix, a percentage its 0..100 axis.
        assert page.inner_text("#chart-title") == title
        # The curl line is the request sent: a POST of the aggregation, every value in its body.
        curl = page.inner_text("#curl")
        assert AGGREGATIONS in curl
        assert "-d " in curl
        assert "/time-series/" not in curl
        assert _padding(60)[-1] in curl
        # The address keeps the query before it, and says why; a reload shows that page.
        assert page.url == shown
        assert page.is_visible("#url-note")
        assert "too long to keep in the page's address" in page.inner_text("#url-note")
        page.reload()
        page.wait_for_selector("body[data-loaded]")
        assert _table(page) == expected
        assert page.is_hidden("#url-note")


def test_the_business_clock_sends_the_schedule_the_url_or_the_select_names(
    desktop: Watched, fresh: Tenant, web_server: Web
):
    """schedule_id in the URL goes with clock=business in every request of the page (the series GET,
    the aggregations body, the export body) and its curl line; the Schedule select lists the
    organization's schedules and writes its choice into the URL; the calendar clock sends none."""
    _, other = office_and_all_hours(web_server, fresh)
    last = datetime.now(ZoneInfo(fresh.timezone)).date()
    query = {
        "metric": "response_time",
        "granularity": "monthly",
        "start": last - timedelta(days=110),
        "end": last,
        "clock": "business",
        "schedule_id": other["id"],
    }
    api_query = {**query, "end": last + timedelta(days=1)}
    del api_query["metric"]
    token = fresh.users["viewer"]["token"]
    status, theirs = web_server.request(
        "GET", f"/api/v1/analytics/time-series/response_time?{urlencode(api_query)}", token
    )
    assert status == 200, theirs
    del api_query["schedule_id"]
    status, defaults = web_server.request(
        "GET", f"/api/v1/analytics/time-series/response_time?{urlencode(api_query)}", token
    )
    assert status == 200, defaults
    values = [p["value"] for p in theirs["points"]]
    assert values != [p["value"] for p in defaults["points"]], "the two schedules count the same"

    desktop.sign_in(fresh.users["viewer"]["email"])
    page = desktop.page()
    sent: list[tuple[str, str, str]] = []
    page.on(
        "request",
        lambda r: (
            sent.append((r.method, r.url, r.post_data or "")) if "/api/v1/analytics/" in r.url else None
        ),
    )
    page.goto(f"/explorer?{urlencode(query)}")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert f"schedule_id={other['id']}" in sent[-1][1], sent
    assert f"schedule_id={other['id']}" in page.inner_text("#curl")
    shown = [_number(row[1]) for row in _table(page)[1]]
    assert shown == [None if v is None else pytest.approx(v, abs=0.01) for v in values]
    # The select: "(default)", then the schedules by name, the default one marked; the URL's chosen.
    assert page.is_visible("#schedule-field")
    assert page.eval_on_selector_all("#schedule_id option", "os => os.map(o => o.textContent)") == [
        "(default)",
        "Office hours (the default)",
        "Around the clock",
    ]
    assert page.input_value("#schedule_id") == str(other["id"])
    # The export sends it too.
    page.click("#export-start")
    page.wait_for_function("() => document.querySelector('#export-state').textContent !== 'submitting…'")
    exported = [json.loads(body) for method, url, body in sent if url.endswith("/analytics/export")]
    assert exported
    assert exported[-1]["query"]["schedule_id"] == other["id"], exported
    # A group-by: the aggregations body carries it.
    sent.clear()
    page.select_option("#group_by", "priority")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    bodies = [json.loads(body) for method, url, body in sent if url.endswith(AGGREGATIONS)]
    assert bodies
    assert (bodies[-1]["clock"], bodies[-1]["schedule_id"]) == ("business", other["id"]), bodies
    page.select_option("#group_by", "")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 3")
    # "(default)" sends none, and the URL names none.
    sent.clear()
    page.select_option("#schedule_id", "")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 4")
    assert "schedule_id" not in page.url
    assert "schedule_id" not in sent[-1][1], sent
    assert [_number(row[1]) for row in _table(page)[1]] == [
        None if p["value"] is None else pytest.approx(p["value"], abs=0.01) for p in defaults["points"]
    ]
    page.select_option("#schedule_id", str(other["id"]))
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 5")
    assert f"schedule_id={other['id']}" in page.url
    # The calendar clock: no Schedule field, no schedule_id sent (the API refuses it there).
    sent.clear()
    page.select_option("#clock", "calendar")
    page.wait_for_function("() => Number(document.body.dataset.loaded) >= 6")
    assert page.is_hidden("#schedule-field")
    assert "schedule_id" not in page.url
    assert "schedule_id" not in sent[-1][1], sent
    assert page.is_hidden("#error"), page.inner_text("#error")
