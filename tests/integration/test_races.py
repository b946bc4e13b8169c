"""Requests on one organization's objects sent at the same moment, as an outside tester sent them: caps
hold, a change racing a deletion is a 404 (never a 500), and a statement past its timeout is a 503
wherever it ran."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import Api
from webapp.alerts import rules
from webapp.reports import schedules as report_schedules
from webapp.webhooks import records

RULE = {
    "name": "cap",
    "metric": "ticket_count",
    "granularity": "daily",
    "condition": {"type": "above", "value": 3},
    "channels": [{"type": "websocket"}],
}
OFFICE = {
    "name": "office",
    "timezone": "Europe/Dublin",
    "intervals": [{"day": "mon", "start": "09:00", "end": "17:00"}],
}


def _at_once(live_app: Any, token: str, calls: list[Callable[[Api], Any]]) -> Counter[int]:
    """Each call on its own thread and client, started together; the statuses answered."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(len(calls))

    def run(call: Callable[[Api], Any]) -> None:
        api = Api(live_app.test_client(), token)
        start.wait()
        status = call(api).status_code
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.fixture
def hook_url(live_app: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(live_app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    return "http://127.0.0.1:9/in"


@pytest.mark.parametrize("kind", ["alerts", "report-schedules", "webhooks"])
def test_creations_sent_at_once_stop_at_the_cap(live_app, make_live_tenant, monkeypatch, hook_url, kind):
    """With room for one more, twelve creations at once made up to five (each counted the same rows)."""
    tenant = make_live_tenant("Caps")
    admin = tenant.users["admin"]["token"]
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": hook_url}).get_json()["id"]
    bodies = {
        "alerts": RULE,
        "report-schedules": {
            "name": "r",
            "cron": "0 7 * * *",
            "timezone": "UTC",
            "export": {"format": "csv", "dataset": "tickets", "query": {"range": "previous_day"}},
            "webhook_id": hook,
        },
        "webhooks": {"url": hook_url},
    }
    monkeypatch.setattr(rules, "MAX_RULES", 3)
    monkeypatch.setattr(report_schedules, "MAX_SCHEDULES", 3)
    monkeypatch.setattr(records, "MAX_WEBHOOKS", 3)
    path = f"/api/v1/{kind}"
    for _ in range(3 - 1 - (kind == "webhooks")):  # the webhook above is one of the three
        assert tenant.admin.post(path, json=bodies[kind]).status_code == 201
    statuses = _at_once(live_app, admin, [lambda api: api.post(path, json=bodies[kind])] * 12)
    assert statuses == {201: 1, 409: 11}
    assert len(tenant.admin.get(path).get_json()["items"]) == 3


@pytest.mark.parametrize("kind", ["alerts", "report-schedules", "webhooks", "schedules"])
def test_changes_racing_a_deletion_are_404_never_500(live_app, make_live_tenant, hook_url, kind):
    """PATCHes and DELETEs of one object at once: one deletion wins (several answered 204 for alerts
    and report schedules), every other answer is 200 (a change before it) or 404 (after it), never
    the 500 of a write whose row was gone."""
    tenant = make_live_tenant("Races")
    admin = tenant.users["admin"]["token"]
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": hook_url}).get_json()["id"]
    made = {
        "alerts": lambda: tenant.admin.post("/api/v1/alerts", json=RULE),
        "report-schedules": lambda: tenant.admin.post(
            "/api/v1/report-schedules",
            json={
                "name": "r",
                "cron": "0 7 * * *",
                "timezone": "UTC",
                "export": {"format": "csv", "dataset": "tickets", "query": {"range": "previous_day"}},
                "webhook_id": hook,
            },
        ),
        "webhooks": lambda: tenant.admin.post("/api/v1/webhooks", json={"url": hook_url}),
        "schedules": lambda: tenant.admin.post("/api/v1/schedules", json=OFFICE),
    }
    changes = {
        "alerts": {"name": "renamed"},
        "report-schedules": {"name": "renamed"},
        "webhooks": {"description": "renamed"},
        "schedules": {"intervals": [{"day": "tue", "start": "08:00", "end": "16:00"}]},
    }
    seen: Counter[int] = Counter()
    for _ in range(3):
        created = made[kind]()
        assert created.status_code == 201, created.get_json()
        path = f"/api/v1/{kind}/{created.get_json()['id']}"
        calls = [lambda api, path=path: api.patch(path, json=changes[kind])] * 8
        calls += [lambda api, path=path: api.delete(path)] * 8
        statuses = _at_once(live_app, admin, calls)
        assert set(statuses) <= {200, 204, 404}, statuses
        assert statuses[204] == 1, statuses  # one deletion: the others find it gone
        assert tenant.admin.get(path).status_code == 404
        seen.update(statuses)
    assert seen[404] > 0


def test_a_statement_past_its_timeout_is_a_503_wherever_it_ran(app):
    """A raw psycopg cursor's QueryCanceled (the business-time fallback reads through one) reached the
    catch-all as a 500 while SQLAlchemy's wrapping of it was a 503."""
    with app.test_request_context("/api/v1/analytics/performance"):
        response = app.handle_user_exception(
            psycopg.errors.QueryCanceled("canceling statement due to timeout")
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "time limit" in response.get_json()["error"]["message"]
