"""Every route of the OpenAPI document, called with another organization's token and that
organization's object ids: 404 and no data. And each role's permissions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import wait_for_job

pytestmark = pytest.mark.worker

# Path parameters that name an object of an organization, and the ones that do not.
OBJECT_PARAMS = {
    "ticket_id",
    "job_id",
    "export_id",
    "org_id",
    "schedule_id",
    "alert_id",
    "webhook_id",
    "report_schedule_id",
    "user_id",
}
VALUE_PARAMS = {"metric": "ticket_count", "field": "priority"}

# Routes that create the caller's own objects or need no auth: they cannot reveal another tenant.
OWN_OR_PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ping"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/docs"),
    ("POST", "/api/v1/tickets"),
    ("POST", "/api/v1/tickets/import"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/schedules"),
    ("POST", "/api/v1/ws/ticket"),
    ("POST", "/api/v1/analytics/export"),
    ("POST", "/api/v1/analytics/refresh-cache"),
    ("POST", "/api/v1/analytics/snapshots"),
    ("DELETE", "/api/v1/analytics/cache"),
    ("POST", "/api/v1/embed-tokens"),
    ("POST", "/api/v1/webhooks"),
}
# The socket can only be opened by a real WebSocket client: tests/e2e/test_websocket.py refuses it.
SOCKET = ("GET", "/api/v1/ws/analytics/{org_id}")

OFFICE = [{"day": "mon", "start": "09:00", "end": "17:00"}]
SLA_TARGETS = {p: {"first_reply_hours": 1} for p in ("urgent", "high", "normal", "low")}
BODIES = {
    ("PATCH", "/api/v1/tickets/{ticket_id}"): {"priority": "low"},
    ("POST", "/api/v1/tickets/{ticket_id}/replies"): {"author": "agent"},
    ("PUT", "/api/v1/tickets/{ticket_id}/satisfaction"): {"rating": 5},
    ("PATCH", "/api/v1/schedules/{schedule_id}"): {"name": "taken"},
    ("PATCH", "/api/v1/alerts/{alert_id}"): {"name": "taken"},
    ("POST", "/api/v1/alerts/{alert_id}/simulate"): {"start": "2026-01-01", "end": "2026-01-02"},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"description": "taken"},
    ("PATCH", "/api/v1/report-schedules/{report_schedule_id}"): {"name": "taken"},
    ("POST", "/api/v1/analytics/aggregations"): {
        "metrics": ["ticket_count", "response_time"],
        "group_by": ["priority"],
    },
}


# Routes whose body names an object of another organization (the victim's), answered 404.
NAMING_ANOTHERS = {
    ("PUT", "/api/v1/sla-policy"),
    ("POST", "/api/v1/alerts"),
    ("POST", "/api/v1/report-schedules"),
}


def _alert_body(webhook_id: int) -> dict[str, Any]:
    return {
        "name": "surge",
        "metric": "ticket_count",
        "granularity": "hourly",
        "condition": {"type": "above", "value": 100},
        "channels": [{"type": "webhook", "webhook_id": webhook_id}],
    }


def _report_body(webhook_id: int) -> dict[str, Any]:
    return {
        "name": "weekly",
        "cron": "0 9 * * mon",
        "timezone": "UTC",
        "export": {"format": "csv", "dataset": "tickets", "query": {"range": "previous_week"}},
        "webhook_id": webhook_id,
    }


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


def _counts_are_zero(value: Any, where: str = "") -> None:
    """Every count-like number in an answer for an organization with no tickets is zero."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("count", "total_count", "total", "value") and isinstance(inner, int | float):
                if key == "value" and "count" not in value:
                    continue
                assert inner == 0, f"{where}.{key} = {inner}"
            _counts_are_zero(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _counts_are_zero(item, where)


def test_another_organizations_objects_are_404_on_every_route(celery_worker, make_live_tenant, live_app):
    victim = make_live_tenant("Victim")
    attacker = make_live_tenant("Attacker")
    marker = "victim-secret-subject-7f3a"
    ticket = victim.agent.post("/api/v1/tickets", json={"subject": marker, "priority": "urgent"}).get_json()
    victim.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"first_response_at": ticket["created_at"]})
    victim.agent.post(f"/api/v1/tickets/{ticket['id']}/replies", json={"author": "customer"})
    victim.agent.put(f"/api/v1/tickets/{ticket['id']}/satisfaction", json={"rating": 5, "comment": marker})
    export_job = victim.viewer.post(
        "/api/v1/analytics/export", json={"format": "csv", "dataset": "tickets", "query": {}}
    ).get_json()
    done = wait_for_job(victim.viewer, export_job["job_id"])
    assert done["state"] == "succeeded", done
    export_id = re.search(r"/exports/([^/?]+)", done["result"]["download_url"]).group(1)
    schedule = victim.admin.post(
        "/api/v1/schedules", json={"name": marker, "timezone": "UTC", "intervals": OFFICE}
    ).get_json()
    # A public address: nothing is ever sent to it (no delivery is made in this test).
    webhook = victim.admin.post(
        "/api/v1/webhooks", json={"url": "https://93.184.216.34/in", "description": marker}
    )
    webhook_id = webhook.get_json()["id"]
    alert = victim.admin.post("/api/v1/alerts", json={**_alert_body(webhook_id), "name": marker}).get_json()
    report = victim.admin.post("/api/v1/report-schedules", json={**_report_body(webhook_id), "name": marker})
    # The attacker's policy may not name the victim's schedule, its alerts and reports not its webhook.
    bodies = {
        **BODIES,
        ("PUT", "/api/v1/sla-policy"): {"schedule_id": schedule["id"], "targets": SLA_TARGETS},
        ("POST", "/api/v1/alerts"): _alert_body(webhook_id),
        ("POST", "/api/v1/report-schedules"): _report_body(webhook_id),
    }
    ids = {
        "alert_id": alert["id"],
        "webhook_id": webhook_id,
        "report_schedule_id": report.get_json()["id"],
        "schedule_id": schedule["id"],
        "ticket_id": ticket["id"],
        "job_id": export_job["job_id"],
        "export_id": export_id,
        "org_id": victim.org_id,
        "user_id": victim.users["viewer"]["id"],
    }

    spec = live_app.test_client().get("/api/v1/openapi.json").get_json()
    covered = set()
    for method, path in _operations(spec):
        if (method, path) in OWN_OR_PUBLIC or (method, path) == SOCKET:
            covered.add((method, path))
            continue
        params = set(re.findall(r"{(\w+)}", path))
        url = path
        for name in params:
            url = url.replace("{" + name + "}", str(ids.get(name, VALUE_PARAMS.get(name, ""))))
        if method == "GET" and path.endswith("/download"):
            # A valid signed link of the victim, presented with the attacker's token.
            url = done["result"]["download_url"]
        call = getattr(attacker.admin, method.lower())
        kwargs = {"json": bodies[(method, path)]} if (method, path) in bodies else {}
        response = call(url, **kwargs)
        text = response.get_data(as_text=True)
        assert marker not in text, (method, path)
        assert "@victim.test" not in text, (method, path)
        if params & OBJECT_PARAMS or (method, path) in NAMING_ANOTHERS:
            assert response.status_code == 404, (method, path, response.status_code, text[:300])
        else:
            assert response.status_code < 500, (method, path, text[:300])
            if response.is_json and response.status_code == 200:
                body = response.get_json()
                _counts_are_zero(body, f"{method} {path}")
                for item in body.get("items", []) if isinstance(body, dict) else []:
                    assert item.get("org_id", attacker.org_id) == attacker.org_id, (method, path)
                    if path == "/api/v1/tickets":
                        assert item["id"] != ticket["id"]
        covered.add((method, path))
    assert covered == set(_operations(spec))
    # A read counted on another organization's schedule is a 404 as well.
    on_victims_clock = f"clock=business&schedule_id={schedule['id']}"
    for route in ("time-series/response_time", "performance", "dashboard"):
        assert attacker.viewer.get(f"/api/v1/analytics/{route}?{on_victims_clock}").status_code == 404, route
    body = {"metrics": ["response_time"], "clock": "business", "schedule_id": schedule["id"]}
    assert attacker.viewer.post("/api/v1/analytics/aggregations", json=body).status_code == 404

    # The victim still sees all of it.
    assert victim.viewer.get(f"/api/v1/tickets/{ticket['id']}").status_code == 200
    assert victim.viewer.get(f"/api/v1/jobs/{export_job['job_id']}").status_code == 200
    assert victim.viewer.get(f"/api/v1/schedules/{schedule['id']}").get_json()["name"] == marker
    assert attacker.admin.get("/api/v1/sla-policy").get_json()["schedule_id"] is None
    assert victim.viewer.get(f"/api/v1/alerts/{alert['id']}").get_json()["name"] == marker
    assert victim.admin.get(f"/api/v1/webhooks/{webhook_id}").get_json()["description"] == marker
    assert (
        victim.viewer.get(f"/api/v1/report-schedules/{ids['report_schedule_id']}").get_json()["name"]
        == marker
    )
    assert attacker.admin.get("/api/v1/alerts").get_json()["items"] == []
    assert victim.viewer.get("/api/v1/tickets").status_code == 200  # the victim's user was not deleted


ROLE_CASES = [
    # (minimum role, method, path, body)
    ("agent", "POST", "/api/v1/tickets", {}),
    ("agent", "POST", "/api/v1/tickets/import", [{"subject": "x"}]),
    ("admin", "DELETE", "/api/v1/analytics/cache", None),
    ("admin", "POST", "/api/v1/analytics/refresh-cache", None),
    ("admin", "POST", "/api/v1/analytics/snapshots", {"type": "daily", "date": "2026-01-01"}),
    ("admin", "GET", "/api/v1/users", None),
    ("admin", "POST", "/api/v1/embed-tokens", {"view": "overview", "expires_in": 600}),
    ("admin", "POST", "/api/v1/users", {"email": "new@example.test", "password": "long-enough-1"}),
    ("admin", "DELETE", "/api/v1/users/2147483647", None),
    ("viewer", "DELETE", "/api/v1/exports/00000000-0000-0000-0000-000000000000", None),
    ("viewer", "GET", "/api/v1/tickets", None),
    ("viewer", "GET", "/api/v1/analytics/dashboard", None),
    ("viewer", "GET", "/api/v1/analytics/time-in-status", None),
    ("viewer", "GET", "/api/v1/analytics/agents", None),
    ("agent", "POST", "/api/v1/tickets/1/replies", {"author": "agent"}),
    ("agent", "PUT", "/api/v1/tickets/1/satisfaction", {"rating": 4}),
    ("viewer", "GET", "/api/v1/jobs", None),
    ("admin", "POST", "/api/v1/schedules", {"name": "S", "timezone": "UTC", "intervals": OFFICE}),
    ("admin", "PUT", "/api/v1/sla-policy", {"targets": SLA_TARGETS}),
    ("viewer", "GET", "/api/v1/schedules", None),
    ("viewer", "GET", "/api/v1/sla-policy", None),
    ("admin", "POST", "/api/v1/alerts", {}),
    ("viewer", "GET", "/api/v1/alerts", None),
    ("admin", "POST", "/api/v1/webhooks", {"url": "https://93.184.216.34/in"}),
    ("admin", "GET", "/api/v1/webhooks", None),
    ("admin", "POST", "/api/v1/report-schedules", {}),
    ("viewer", "GET", "/api/v1/report-schedules", None),
]
RANK = {"viewer": 0, "agent": 1, "admin": 2}


@pytest.mark.parametrize(("minimum", "method", "path", "body"), ROLE_CASES)
def test_roles(tenant, minimum, method, path, body):
    for role in ("viewer", "agent", "admin"):
        api = tenant.apis[role]
        kwargs = {"json": body} if body is not None else {}
        status = getattr(api, method.lower())(path, **kwargs).status_code
        if RANK[role] < RANK[minimum]:
            assert status == 403, (role, method, path, status)
        else:
            assert status != 403, (role, method, path, status)


def _operation(spec: dict, method: str, path: str) -> dict:
    """The document's operation serving `method` on the concrete `path`."""
    for template, operations in spec["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not documented")


def test_the_document_names_the_role_each_operation_needs(client):
    """Every operation that takes a bearer token alone says which role it needs (x-required-role, and
    in words), and what it says is what the routes enforce (ROLE_CASES)."""
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if operation.get("security") == [{"bearerAuth": []}]:
                assert operation.get("x-required-role") in {*RANK, "refresh"}, (method, path)
                assert "role" in operation["description"], (method, path)
    for minimum, method, path, _ in ROLE_CASES:
        assert _operation(spec, method, path)["x-required-role"] == minimum, (method, path)
    assert _operation(spec, "POST", "/api/v1/auth/refresh")["x-required-role"] == "refresh"


def test_admin_creates_users_in_its_own_organization(tenant, client):
    created = tenant.admin.post(
        "/api/v1/users",
        json={"email": "Agent.Two@Example.test", "password": "long-enough-1", "role": "agent"},
    )
    assert created.status_code == 201
    assert created.get_json()["org_id"] == tenant.org_id
    login = client.post(
        "/api/v1/auth/login", json={"email": "agent.two@example.test", "password": "long-enough-1"}
    )
    assert login.status_code == 200
    again = tenant.admin.post(
        "/api/v1/users", json={"email": "agent.two@example.test", "password": "long-enough-1"}
    )
    assert again.status_code == 409
    bad = tenant.admin.post("/api/v1/users", json={"email": "x@y.z", "password": "short", "role": "owner"})
    assert bad.status_code == 400
