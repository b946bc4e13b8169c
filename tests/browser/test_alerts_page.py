"""The alerts page in a real browser: rules with their state, a rule created in the page reaching the
API, the form refusing what the API refuses in the API's words, a live `alert` moving a rule's state,
a rule edited in place keeping its history, what a viewer sees, both layouts."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Page
from sqlalchemy import text

from tests.browser.conftest import DESKTOP, PHONE, Watched, screenshot
from tests.conftest import Tenant, db_scalar
from tests.e2e.conftest import Web
from webapp.core.filters import split_values
from webapp.core.timeutil import utcnow

pytestmark = pytest.mark.worker

LIVE_WITHIN_SECONDS = 2.0
RULE = {
    "name": "Any ticket this hour",
    "metric": "ticket_count",
    "granularity": "hourly",
    "condition": {"type": "above", "value": 0},
    "channels": [{"type": "websocket"}],
}


def _alerts(watched: Watched, tenant: Tenant, role: str) -> Page:
    watched.sign_in(tenant.users[role]["email"])
    page = watched.page()
    page.goto("/alerts")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_selector("#live[data-state=live]")
    return page


def _rules(web: Web, tenant: Tenant) -> list[dict[str, Any]]:
    status, answer = web.request("GET", "/api/v1/alerts", tenant.users["viewer"]["token"])
    assert status == 200, answer
    return answer["items"]


def _fill(page: Page, fields: dict[str, str]) -> None:
    """Fill the new-rule form: selects by value, the rest as typed text."""
    for name, value in fields.items():
        selector = f"#alert-form [name={name}]"
        if page.eval_on_selector(selector, "el => el.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


# What the form holds before anything is typed.
FORM_DEFAULTS = {
    "metric": "ticket_count",
    "granularity": "hourly",
    "condition": "above",
    "direction": "up",
    "value": "",
    "score": "3",
    "baseline_periods": "4",
    "min_count": "0",
}
CONDITION_FIELDS = {
    "above": ("value",),
    "below": ("value",),
    "change_pct": ("direction", "value"),
    "anomaly": ("score", "baseline_periods"),
}


def _number(typed: str) -> float | int | None:
    """A number input's text as the browser's JSON carries it (None: empty)."""
    if typed == "":
        return None
    value = float(typed)
    return int(value) if value.is_integer() else value


def _body(fields: dict[str, str]) -> dict[str, Any]:
    """The request a form filled with `fields` stands for, written from the API's shapes."""
    typed = {**FORM_DEFAULTS, **fields}
    condition: dict[str, Any] = {"type": typed["condition"]}
    for name in CONDITION_FIELDS[typed["condition"]]:
        value = typed[name] if name == "direction" else _number(typed[name])
        if value is not None:
            condition[name] = value
    body: dict[str, Any] = {
        "name": typed["name"],
        "metric": typed["metric"],
        "granularity": typed["granularity"],
        "condition": condition,
        "channels": [{"type": "websocket"}],
        "enabled": True,
    }
    if _number(typed["min_count"]) is not None:
        body["min_count"] = _number(typed["min_count"])
    # A filter box reads as a query string's list (the server's own parser), sent as a JSON list.
    filters = {
        name: [str(v) for v in split_values(v, name)]
        for k, v in typed.items()
        if k.startswith("filter-") and v
        for name in [k.removeprefix("filter-")]
    }
    if filters:
        body["filters"] = filters
    return body


def _focused(page: Page) -> str:
    """The focused element as `#rule-<id> <action>` or `form <name>`."""
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          const rule = el.closest(".rule");
          return rule ? `#${rule.id} ${el.dataset.action}` : `form ${el.name}`;
        }"""
    )


def _posts_to_alerts(page: Page) -> list[str]:
    """The bodies of every POST /api/v1/alerts the page sends from now on."""
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data or "")
            if request.method == "POST" and request.url.endswith("/api/v1/alerts")
            else None
        ),
    )
    return sent


def test_an_admin_creates_a_rule_in_the_page_and_the_api_has_it(desktop, fresh, web_server):
    status, hook = web_server.request(
        "POST",
        "/api/v1/webhooks",
        fresh.users["admin"]["token"],
        {"url": "https://93.184.216.34/hook", "description": "On-call"},
    )
    assert status == 201, hook
    page = _alerts(desktop, fresh, "admin")
    assert page.inner_text("#rules .empty") == "No alert rules yet"
    page.check(f"#alert-webhooks input[value='{hook['id']}']")
    assert page.inner_text("#alert-webhooks") == "On-call"
    _fill(
        page,
        {
            "name": "Urgent surge",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": "change_pct",
            "direction": "up",
            "value": "50",
            "min_count": "3",
            "filter-priority": "urgent,high",
            "filter-category": '"returns, damaged", billing',
        },
    )
    page.click("#alert-form button[type=submit]")
    page.wait_for_selector("#alert-form[data-created]")
    rule_id = int(page.get_attribute("#alert-form", "data-created"))

    rules = _rules(web_server, fresh)
    assert [r["id"] for r in rules] == [rule_id]
    rule = rules[0]
    assert rule["name"] == "Urgent surge"
    assert (rule["metric"], rule["granularity"], rule["min_count"]) == ("ticket_count", "hourly", 3)
    assert rule["condition"] == {"type": "change_pct", "direction": "up", "value": 50}
    assert rule["filters"] == {"priority": ["high", "urgent"], "category": ["billing", "returns, damaged"]}
    assert rule["channels"] == [{"type": "websocket"}, {"type": "webhook", "webhook_id": hook["id"]}]
    assert rule["enabled"] is True

    card = f"#rule-{rule_id}"
    assert page.inner_text(f"{card} h3") == "Urgent surge"
    assert page.get_attribute(card, "data-state") == "ok"
    assert "change up 50 %" in page.inner_text(f"{card} .rule-what")
    assert "priority: high, urgent" in page.inner_text(f"{card} .rule-what")
    # A value holding a comma is shown quoted: one value never reads as two.
    assert 'category: billing, "returns, damaged"' in page.inner_text(f"{card} .rule-what")
    assert f"via websocket, webhook {hook['id']}" in page.inner_text(f"{card} .rule-meta")
    # Edit opens the form on the rule as the API has it, a value holding a comma still one value.
    page.click(f"{card} [data-action=edit]")
    assert page.inner_text("#alert-form-title") == "Edit alert rule: Urgent surge"
    assert page.inner_text("#alert-form button[type=submit]") == "Save changes"
    assert _focused(page) == "form name"
    prefilled = {"name": "Urgent surge", "condition": "change_pct", "direction": "up", "value": "50"}
    prefilled |= {
        "min_count": "3",
        "filter-priority": "high,urgent",
        "filter-category": 'billing,"returns, damaged"',
    }
    for name, value in prefilled.items():
        assert page.input_value(f"#alert-form [name={name}]") == value, name
    assert page.is_checked(f"#alert-webhooks input[value='{hook['id']}']")
    assert page.is_checked("#alert-form [name=websocket]")
    # Cancel: the form creates again, the focus back on the card.
    page.click("#alert-form [data-role=cancel]")
    assert page.inner_text("#alert-form-title") == "New alert rule"
    assert page.is_hidden("#alert-form [data-role=cancel]")
    assert _focused(page) == f"{card} edit"
    # Saved unchanged, the rule reads back the same: what the form wrote back is what it read.
    page.click(f"{card} [data-action=edit]")
    page.click("#alert-form button[type=submit]")
    page.wait_for_selector(f"#alert-form[data-saved='{rule_id}'][data-mode=create]")
    again = _rules(web_server, fresh)[0]
    assert {k: v for k, v in again.items() if k != "updated_at"} == {
        k: v for k, v in rule.items() if k != "updated_at"
    }
    # The form is ready for another rule; the new rule's history is empty.
    assert page.input_value("#alert-form [name=name]") == ""
    page.click(f"{card} .rule-actions button:text('History')")
    page.wait_for_selector(f"{card} .history[data-loaded='0']")

    # Pause, then delete (a second click confirms): the API follows.
    page.click(f"{card} [data-action=pause]")
    page.wait_for_selector(f"{card}[data-enabled=false]")
    assert _rules(web_server, fresh)[0]["enabled"] is False
    page.click(f"{card} [data-action=pause]")
    page.wait_for_selector(f"{card}[data-enabled=true]")
    page.click(f"{card} [data-action=delete]")
    page.click(f"{card} [data-action=delete]")
    page.wait_for_selector(card, state="detached")
    assert _rules(web_server, fresh) == []


# Bodies the API refuses for their shape: the page refuses each before sending, in the API's words.
REFUSED_BY_SHAPE = {
    "empty name": {"name": ""},
    "anomaly score 0": {"condition": "anomaly", "score": "0"},
    "one baseline period": {"condition": "anomaly", "baseline_periods": "1"},
    "fractional periods": {"condition": "anomaly", "baseline_periods": "2.5"},
    "score too high": {"condition": "anomaly", "score": "1000.5"},
    "no threshold": {"condition": "above", "value": ""},
    "no change": {"condition": "change_pct", "value": "0"},
    "negative min_count": {"min_count": "-1"},
}


def test_the_form_refuses_what_the_api_refuses_in_the_apis_words(desktop, fresh, web_server):
    page = _alerts(desktop, fresh, "admin")
    sent = _posts_to_alerts(page)
    token = fresh.users["admin"]["token"]
    for case, fields in REFUSED_BY_SHAPE.items():
        page.goto("/alerts")
        page.wait_for_selector("body[data-loaded]")
        _fill(page, {"name": "x", **fields})
        page.click("#alert-form button[type=submit]")
        page.wait_for_selector("#form-error:not([hidden])")
        status, answer = web_server.request("POST", "/api/v1/alerts", token, _body({"name": "x", **fields}))
        assert status == 400, (case, answer)
        assert page.inner_text("#form-error") == answer["error"]["message"], case
        assert page.locator("#alert-form [aria-invalid=true]").count() == 1, case
    assert sent == [], "nothing the API refuses for its shape was sent"

    # What only the server can judge is sent, and its refusal shown as it words it.
    desktop.allowed.append("status of 400")
    page.goto("/alerts")
    page.wait_for_selector("body[data-loaded]")
    fields = {"name": "x", "value": "1", "filter-priority": "whenever"}
    _fill(page, fields)
    page.click("#alert-form button[type=submit]")
    page.wait_for_selector("#form-error:not([hidden])")
    assert [json.loads(body) for body in sent] == [_body(fields)]
    status, answer = web_server.request("POST", "/api/v1/alerts", token, _body(fields))
    assert status == 400
    assert "unknown priority 'whenever'" in answer["error"]["message"]
    assert page.inner_text("#form-error") == answer["error"]["message"]
    assert page.get_attribute("#alert-form [name=filter-priority]", "aria-invalid") == "true"
    assert _rules(web_server, fresh) == []


def _last_hour_count(db_engine: Any, org_id: int, hour: datetime) -> int:
    """Tickets created in [hour, hour + 1 h), from the creation events."""
    return db_scalar(
        db_engine,
        "SELECT count(*) FROM ticket_events WHERE org_id = :org AND event_type = 'created'"
        " AND occurred_at >= :start AND occurred_at < :end",
        org=org_id,
        start=hour,
        end=hour + timedelta(hours=1),
    )


def test_a_live_alert_moves_a_rules_state_without_a_reload(
    desktop, fresh, web_server, db_engine, base_app: Flask
):
    status, rule = web_server.request("POST", "/api/v1/alerts", fresh.users["admin"]["token"], RULE)
    assert status == 201, rule
    page = _alerts(desktop, fresh, "admin")
    page.evaluate("window.sameDocument = true")
    card = f"#rule-{rule['id']}"
    assert page.get_attribute(card, "data-state") == "ok"
    page.click(f"{card} .rule-actions button:text('History')")
    page.wait_for_selector(f"{card} .history[data-loaded='0']")

    # A ticket in the hour that has just closed, and the rule as if its last pass ran before it closed.
    last_hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    status, _ = web_server.request(
        "POST",
        "/api/v1/tickets",
        fresh.users["agent"]["token"],
        {"subject": "late", "created_at": (last_hour + timedelta(minutes=1)).isoformat()},
    )
    assert status == 201
    with db_engine.begin() as conn:
        conn.execute(
            text("UPDATE alert_rules SET evaluated_until = :at WHERE id = :id"),
            {"at": last_hour, "id": rule["id"]},
        )
    expected = _last_hour_count(db_engine, fresh.org_id, last_hour)
    assert expected >= 1
    # The real pass, in the real worker: it records the transition and publishes the `alert` event.
    outcome = (
        base_app.extensions["celery"]
        .send_task("alerts.evaluate_due", kwargs={"org_ids": [fresh.org_id]})
        .get(timeout=30)
    )
    passed = time.monotonic()
    assert outcome["transitions"] == 1, outcome
    page.wait_for_selector(f"{card}[data-state=firing]", timeout=LIVE_WITHIN_SECONDS * 1000)
    assert time.monotonic() - passed < LIVE_WITHIN_SECONDS
    assert page.evaluate("window.sameDocument") is True  # no reload
    assert page.inner_text(f"{card} .state") == "firing"
    # The open history shows the transition the API records.
    page.wait_for_selector(f"{card} .history[data-loaded='1']")
    status, events = web_server.request(
        "GET", f"/api/v1/alerts/{rule['id']}/events", fresh.users["viewer"]["token"]
    )
    assert [(e["state"], e["value"]) for e in events["items"]] == [("firing", expected)]
    row = page.locator(f"{card} .history tbody tr").first
    assert row.get_attribute("data-state") == "firing"
    assert row.locator("td").nth(2).inner_text() == f"{expected:,}"
    assert page.locator(f"{card} .history thead th").all_inner_texts() == [
        "Bucket",
        "State",
        "Value",
        "Recorded",
    ]
    # The card is the rule as the API has it now: evaluated.
    page.wait_for_function(
        "card => !document.querySelector(card + ' .rule-meta').textContent.endsWith('not yet')", arg=card
    )
    news = page.inner_text("#alert-news")
    assert news.startswith(f"{RULE['name']} is firing"), news
    screenshot(page, "alerts")

    # Edited in the page: the same rule (same id) with the new name and threshold, its history kept.
    page.click(f"{card} [data-action=edit]")
    assert page.input_value("#alert-form [name=value]") == "0"
    # Another admin pauses the rule while the form is open: the save sends only what the form
    # changed, so the pause stays.
    status, paused = web_server.request(
        "PATCH", f"/api/v1/alerts/{rule['id']}", fresh.users["admin"]["token"], {"enabled": False}
    )
    assert status == 200, paused
    page.fill("#alert-form [name=name]", "Many tickets this hour")
    page.fill("#alert-form [name=value]", "5")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#alert-form[data-saved='{rule['id']}'][data-mode=create]")
    status, edited = web_server.request("GET", f"/api/v1/alerts/{rule['id']}", fresh.users["viewer"]["token"])
    assert status == 200, edited
    assert (edited["name"], edited["condition"]) == ("Many tickets this hour", {"type": "above", "value": 5})
    assert edited["enabled"] is False
    assert (edited["state"], edited["channels"], edited["filters"]) == ("firing", RULE["channels"], {})
    status, kept = web_server.request(
        "GET", f"/api/v1/alerts/{rule['id']}/events", fresh.users["viewer"]["token"]
    )
    assert kept["items"] == events["items"]
    # The card is updated in place, and has the focus back.
    assert page.locator("#rules .rule").count() == 1
    assert page.inner_text(f"{card} h3") == "Many tickets this hour"
    assert "above 5" in page.inner_text(f"{card} .rule-what")
    assert _focused(page) == f"{card} edit"
    assert page.evaluate("window.sameDocument") is True
    # The open history follows an edit of the condition's kind: a change rule's history has a Change column.
    page.click(f"{card} [data-action=edit]")
    page.select_option("#alert-form [name=condition]", "change_pct")
    page.fill("#alert-form [name=value]", "50")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#alert-form[data-saved='{rule['id']}'][data-mode=create]")
    page.wait_for_function(
        "card => [...document.querySelectorAll(card + ' .history thead th')]"
        ".some(th => th.textContent === 'Change')",
        arg=card,
    )
    status, edited = web_server.request("GET", f"/api/v1/alerts/{rule['id']}", fresh.users["viewer"]["token"])
    assert status == 200, edited
    assert edited["condition"]["type"] == "change_pct", edited

    # An edit the server refuses shows its message as it words it; Escape leaves the edit unsaved.
    desktop.allowed.append("status of 400")
    page.click(f"{card} [data-action=edit]")
    page.fill("#alert-form [name=filter-priority]", "whenever")
    page.click("#alert-form button[type=submit]")
    page.wait_for_selector("#form-error:not([hidden])")
    refused = {k: edited[k] for k in ("name", "metric", "granularity", "condition", "min_count", "channels")}
    refused |= {"enabled": False, "filters": {"priority": ["whenever"]}}
    status, answer = web_server.request(
        "PATCH", f"/api/v1/alerts/{rule['id']}", fresh.users["admin"]["token"], refused
    )
    assert status == 400, answer
    assert "unknown priority 'whenever'" in answer["error"]["message"]
    assert page.inner_text("#form-error") == answer["error"]["message"]
    assert page.get_attribute("#alert-form [name=filter-priority]", "aria-invalid") == "true"
    page.keyboard.press("Escape")
    assert page.get_attribute("#alert-form", "data-mode") == "create"
    assert page.is_hidden("#form-error")
    assert _focused(page) == f"{card} edit"
    status, unchanged = web_server.request(
        "GET", f"/api/v1/alerts/{rule['id']}", fresh.users["viewer"]["token"]
    )
    assert unchanged == edited


def test_a_viewer_sees_the_rules_but_no_admin_actions(desktop, fresh, web_server):
    status, rule = web_server.request("POST", "/api/v1/alerts", fresh.users["admin"]["token"], RULE)
    assert status == 201
    for role in ("viewer", "agent"):
        page = _alerts(desktop, fresh, role)
        assert page.is_visible(f"#rule-{rule['id']}")
        assert page.is_hidden("#alert-form")
        assert page.is_visible("#viewer-note")
        assert page.locator("[data-action]").count() == 0
        assert page.get_by_role("button", name="Edit").count() == 0
        page.close()


def test_a_rule_deleted_elsewhere_leaves_the_list_and_others_show_when_the_page_is_shown_again(
    desktop, fresh, web_server
):
    """A rule deleted in another tab (or by another admin) is dropped, and said, when an action on it
    answers 404, rather than listed on with every action failing; the list is read again when the tab
    is shown again, so rules created or deleted meanwhile appear or go without a click."""
    admin = fresh.users["admin"]["token"]
    made = {}
    for name in ("Paused elsewhere", "Edited elsewhere", "Deleted unseen"):
        status, rule = web_server.request("POST", "/api/v1/alerts", admin, {**RULE, "name": name})
        assert status == 201, rule
        made[name] = rule["id"]
    page = _alerts(desktop, fresh, "admin")
    desktop.allowed.append("status of 404")
    for rule_id in made.values():
        assert page.is_visible(f"#rule-{rule_id}")

    # Pause on a rule another tab deleted: the card goes, and the page says why.
    paused = f"#rule-{made['Paused elsewhere']}"
    status, _ = web_server.request("DELETE", f"/api/v1/alerts/{made['Paused elsewhere']}", admin)
    assert status == 204
    page.click(f"{paused} [data-action=pause]")
    page.wait_for_selector(paused, state="detached")
    assert (
        page.inner_text("#alert-news")
        == "Paused elsewhere was deleted elsewhere (in another tab or by another admin)"
    )

    # Edit opened, the rule deleted meanwhile, Save: the card goes, and the form turns to a new rule
    # keeping what was typed (Save would make it anew), saying why.
    edited = f"#rule-{made['Edited elsewhere']}"
    page.click(f"{edited} [data-action=edit]")
    status, _ = web_server.request("DELETE", f"/api/v1/alerts/{made['Edited elsewhere']}", admin)
    assert status == 204
    page.fill("#alert-form [name=name]", "Too late")
    page.keyboard.press("Enter")
    page.wait_for_selector(edited, state="detached")
    page.wait_for_selector("#alert-form[data-mode=create]")
    assert page.input_value("#alert-form [name=name]") == "Too late"
    assert "deleted elsewhere: Save creates a new rule" in page.inner_text("#form-error")
    assert (
        page.inner_text("#alert-news")
        == "Edited elsewhere was deleted elsewhere (in another tab or by another admin)"
    )

    # Another tab creates one rule and deletes another while this one is hidden: shown again, the
    # page reads the list at once.
    status, created = web_server.request("POST", "/api/v1/alerts", admin, {**RULE, "name": "Made elsewhere"})
    assert status == 201, created
    status, _ = web_server.request("DELETE", f"/api/v1/alerts/{made['Deleted unseen']}", admin)
    assert status == 204
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    # Within a few seconds: the page's 30 s re-read is not what shows them.
    page.wait_for_selector(f"#rule-{created['id']}", timeout=3_000)
    page.wait_for_selector(f"#rule-{made['Deleted unseen']}", state="detached", timeout=3_000)
    assert page.locator("#rules .rule").count() == 1


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_alerts_page_fits_desktop_and_phone(request, size, viewport, fresh, web_server):
    for name in ("Backlog anomaly", "Slow replies"):
        body = {**RULE, "name": name, "condition": {"type": "anomaly", "score": 3, "baseline_periods": 4}}
        status, _ = web_server.request("POST", "/api/v1/alerts", fresh.users["admin"]["token"], body)
        assert status == 201
    watched: Watched = request.getfixturevalue(size)
    page = _alerts(watched, fresh, "admin")
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    for right in page.eval_on_selector_all(
        ".rule, .panel", "els => els.map(e => e.getBoundingClientRect().right)"
    ):
        assert right <= viewport["width"]
    lefts = {round(x) for x in page.eval_on_selector_all(".rule", "els => els.map(e => e.offsetLeft)")}
    assert len(lefts) == (2 if size == "desktop" else 1)
    if size == "phone":
        screenshot(page, "alerts-phone")


def _rule_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**RULE, "condition": dict(RULE["condition"])}
    for name, value in changes.items():
        if value is _ABSENT:
            body.pop(name, None)
        else:
            body[name] = value
    return body


_ABSENT = object()
# Bodies near every limit the document states, on both sides, and of the wrong shape.
CHECKED_BODIES = [
    _rule_body(),
    _rule_body(name="n" * 200),
    _rule_body(name="n" * 201),
    _rule_body(name="é" * 200),
    _rule_body(name="🚨" * 201),
    _rule_body(name=""),
    _rule_body(name=7),
    _rule_body(name=_ABSENT),
    _rule_body(metric="nope"),
    _rule_body(metric=_ABSENT),
    _rule_body(granularity="monthly"),
    _rule_body(granularity="daily"),
    _rule_body(condition={"type": "below", "value": -5.5}),
    _rule_body(condition={"type": "above"}),
    _rule_body(condition={"type": "between", "value": 1}),
    _rule_body(condition={"value": 1}),
    _rule_body(condition={"type": "above", "value": 1, "extra": 2}),
    _rule_body(condition={"type": "change_pct", "direction": "up", "value": 1_000_000}),
    _rule_body(condition={"type": "change_pct", "direction": "up", "value": 1_000_000.5}),
    _rule_body(condition={"type": "change_pct", "direction": "sideways", "value": 5}),
    _rule_body(condition={"type": "change_pct", "direction": "either", "value": 0}),
    _rule_body(condition={"type": "change_pct", "value": 5}),
    _rule_body(condition={"type": "anomaly"}),
    _rule_body(condition={"type": "anomaly", "score": 1000, "baseline_periods": 52}),
    _rule_body(condition={"type": "anomaly", "score": 1000.001}),
    _rule_body(condition={"type": "anomaly", "score": 0}),
    _rule_body(condition={"type": "anomaly", "baseline_periods": 53}),
    _rule_body(condition={"type": "anomaly", "baseline_periods": 2}),
    _rule_body(condition={"type": "anomaly", "baseline_periods": 1}),
    _rule_body(condition={"type": "anomaly", "baseline_periods": 4.5}),
    _rule_body(condition="above"),
    _rule_body(min_count=0),
    _rule_body(min_count=10**12),
    _rule_body(min_count=10**12 + 1),
    _rule_body(min_count=-1),
    _rule_body(min_count=2.5),
    _rule_body(min_count=True),
    _rule_body(channels=[]),
    _rule_body(channels=_ABSENT),
    _rule_body(channels=[{"type": "email"}]),
    _rule_body(channels=[{}]),
    _rule_body(channels=[{"type": "websocket"}] * 20),
    _rule_body(channels=[{"type": "websocket"}] * 21),
    _rule_body(channels=[{"type": "webhook"}]),
    _rule_body(channels=[{"type": "webhook", "webhook_id": 0}]),
    _rule_body(channels="websocket"),
    _rule_body(enabled=False),
    _rule_body(enabled="yes"),
    _rule_body(colour="red"),
    _rule_body(filters={"priority": "urgent,high", "assigned_to": ["ana", None]}),
]
# Filter values are the server's to judge: the page sends them, and shows the API's refusal.
SERVER_JUDGED = [
    _rule_body(filters={"mood": "calm"}),
    _rule_body(filters={"priority": 5}),
    _rule_body(filters={"priority": "soon"}),
    _rule_body(filters=[]),
]

# The check the form runs, from the page's own modules.
CHECK_IN_PAGE = """async (bodies) => {
  const links = [...document.querySelectorAll("link[rel=modulepreload]")].map((l) => l.href);
  const { checkRule } = await import(links.find((href) => href.includes("/alert-form.")));
  const { Spec } = await import(links.find((href) => href.includes("/spec.")));
  const spec = await Spec.load();
  return bodies.map((body) => checkRule(spec, body)?.text ?? null);
}"""


def test_the_pages_check_agrees_with_the_api_on_every_limit(desktop, fresh, web_server):
    """The schema check the form runs, against the API's answer to the same body: the page lets through
    exactly what the API accepts (201) and refuses the rest with the API's message."""
    page = _alerts(desktop, fresh, "admin")
    verdicts = page.evaluate(CHECK_IN_PAGE, CHECKED_BODIES)
    token = fresh.users["admin"]["token"]
    accepted = 0
    for body, verdict in zip(CHECKED_BODIES, verdicts, strict=True):
        status, answer = web_server.request("POST", "/api/v1/alerts", token, body)
        if verdict is None:
            assert status == 201, (body, answer)
            assert web_server.request("DELETE", f"/api/v1/alerts/{answer['id']}", token)[0] == 204
            accepted += 1
        else:
            assert status == 400, (body, verdict, answer)
            assert verdict == answer["error"]["message"], body
    assert 10 <= accepted < len(CHECKED_BODIES)
    assert page.evaluate(CHECK_IN_PAGE, SERVER_JUDGED) == [None] * len(SERVER_JUDGED)
    for body in SERVER_JUDGED:
        assert web_server.request("POST", "/api/v1/alerts", token, body)[0] == 400
