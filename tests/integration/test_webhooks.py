"""Webhooks end to end: a real receiver on 127.0.0.1 checks every signature; real worker deliveries,
retries with the same id, a receiver that is down disabling its webhook, the SSRF guard, and an alert
fired by tickets created through the API arriving once."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

from tests.integration.webhook_receiver import Receiver
from webapp.core.timeutil import utcnow
from webapp.webhooks import deliveries

pytestmark = pytest.mark.worker


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def private_allowed(live_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web side accepts 127.0.0.1 targets (the test worker's environment allows them too)."""
    monkeypatch.setitem(live_app.config, "WEBHOOK_ALLOW_PRIVATE", True)


def _webhook(api: Any, url: str, receiver: Receiver | None = None) -> dict[str, Any]:
    response = api.post("/api/v1/webhooks", json={"url": url, "description": "tests"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    if receiver is not None:
        receiver.secret = body["secret"]
    return body


def _log(api: Any, webhook_id: int, *, until: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """The delivery log, once `until` deliveries have finished (succeeded or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
        assert response.status_code == 200, response.get_json()
        items = response.get_json()["items"]
        if sum(item["state"] in ("succeeded", "failed") for item in items) >= until:
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def test_a_test_delivery_is_signed_sent_by_a_worker_and_logged(
    celery_worker, make_live_tenant, receiver, private_allowed
):
    tenant = make_live_tenant("Hooks")
    hook = _webhook(tenant.admin, receiver.url, receiver)
    assert hook["secret"].startswith("whsec_")
    listed = tenant.admin.get("/api/v1/webhooks").get_json()["items"]
    assert [item["id"] for item in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in tenant.admin.get(f"/api/v1/webhooks/{hook['id']}").get_json()

    accepted = tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert accepted.status_code == 202
    # Where to follow it, as every 202 says: the webhook's delivery log.
    assert accepted.headers["Location"] == f"/api/v1/webhooks/{hook['id']}/deliveries"
    assert accepted.headers["Retry-After"] == "1"
    (got,) = receiver.wait_for(1)
    assert got.signature_ok
    assert abs(got.timestamp - time.time()) < 60
    assert got.body["id"] == accepted.get_json()["delivery_id"]
    assert got.body["type"] == "webhook.test"
    assert got.body["organization_id"] == tenant.org_id
    assert set(got.body) == {"id", "type", "created_at", "organization_id", "data"}
    assert got.headers["Content-Type"] == "application/json"
    (logged,) = _log(tenant.admin, hook["id"])
    assert logged["state"] == "succeeded"
    assert [(a["number"], a["status_code"], a["address"]) for a in logged["attempts"]] == [
        (1, 200, "127.0.0.1")
    ]


def test_tests_on_their_way_are_capped_per_webhook(
    celery_worker, make_live_tenant, receiver, private_allowed
):
    """A loop of tests must not fill the deliveries queue every organization shares: past
    TESTS_IN_FLIGHT unfinished tests of a webhook, 429 with Retry-After, and no delivery is made."""
    tenant = make_live_tenant("Test loop")
    hook = _webhook(tenant.admin, receiver.url, receiver)
    receiver.script = [4.0] * 20  # no answer within the timeout: each test stays on its way for seconds
    for _ in range(deliveries.TESTS_IN_FLIGHT):
        assert tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 202
    refused = tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert refused.status_code == 429, refused.get_json()
    assert refused.headers["Retry-After"] == "5"
    assert refused.get_json()["error"]["details"]["limit"] == deliveries.TESTS_IN_FLIGHT
    logged = tenant.admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries").get_json()["items"]
    assert len(logged) == deliveries.TESTS_IN_FLIGHT
    # Once they have finished, tests are accepted again.
    receiver.script = []
    _log(tenant.admin, hook["id"], until=deliveries.TESTS_IN_FLIGHT, timeout=60)
    assert tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 202


def test_tests_waiting_between_retries_do_not_hold_new_ones(
    live_app, make_live_tenant, receiver, private_allowed
):
    """Retries of a receiver that is down wait for up to hours: an admin testing it meanwhile is not
    refused; a disabled webhook says so before any count."""
    from webapp.models import Webhook, WebhookDelivery

    tenant = make_live_tenant("Retrying")
    hook = _webhook(tenant.admin, receiver.url, receiver)
    with live_app.app_context(), live_app.extensions["db_sessionmaker"]() as session:
        for _ in range(deliveries.TESTS_IN_FLIGHT + 2):
            session.add(
                WebhookDelivery(
                    org_id=tenant.org_id,
                    webhook_id=hook["id"],
                    event_type="webhook.test",
                    body="{}",
                    state="pending",
                    attempts=1,
                    next_attempt_at=utcnow() + timedelta(hours=1),
                    created_at=utcnow(),
                )
            )
        session.commit()
        webhook = session.get(Webhook, hook["id"])
        assert webhook is not None
        assert deliveries.tests_in_flight(session, webhook) == 0
        session.rollback()
    assert tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 202
    disabled = tenant.admin.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert disabled.status_code == 200, disabled.get_json()
    assert tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 409


def test_a_failed_attempt_is_retried_with_the_same_id(
    celery_worker, make_live_tenant, receiver, private_allowed
):
    tenant = make_live_tenant("Retries")
    hook = _webhook(tenant.admin, receiver.url, receiver)
    # A 500, then no answer within the timeout (3 s in tests), then a 200.
    receiver.script = [500, 4.0, 200]
    delivery_id = tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").get_json()["delivery_id"]
    got = receiver.wait_for(3, timeout=40)
    assert [r.id for r in got] == [delivery_id] * 3
    assert all(r.signature_ok for r in got)
    assert len({r.raw for r in got}) == 1  # the same body, byte for byte
    (logged,) = _log(tenant.admin, hook["id"], timeout=40)
    assert logged["state"] == "succeeded"
    attempts = logged["attempts"]
    assert [a["status_code"] for a in attempts] == [500, None, 200]
    assert "no answer within 3 s" in attempts[1]["error"]
    # Growing delays: the second attempt 0.5 s after the first, the third 1 s after the second's end.
    starts = [datetime.fromisoformat(a["at"]) for a in attempts]
    assert starts[1] - starts[0] >= timedelta(seconds=0.5)
    assert starts[2] - starts[1] >= timedelta(seconds=3 + 1)
    assert tenant.admin.get(f"/api/v1/webhooks/{hook['id']}").get_json()["consecutive_failures"] == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_receiver_that_is_down_is_retried_and_finally_disables_the_webhook(
    celery_worker, make_live_tenant, private_allowed
):
    tenant = make_live_tenant("Down")
    hook = _webhook(tenant.admin, f"http://127.0.0.1:{_closed_port()}/nobody")
    # WEBHOOK_MAX_FAILURES is 2 in tests, with two retries (0.5 s, 1 s) per delivery.
    for _ in range(2):
        assert tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 202
    items = _log(tenant.admin, hook["id"], until=2)
    assert [item["state"] for item in items] == ["failed", "failed"]
    for item in items:
        assert [a["number"] for a in item["attempts"]] == [1, 2, 3]
        assert all(a["status_code"] is None and a["error"] for a in item["attempts"])
    shown = tenant.admin.get(f"/api/v1/webhooks/{hook['id']}").get_json()
    assert shown["enabled"] is False
    assert shown["consecutive_failures"] == 2
    assert "2 deliveries in a row failed" in shown["disabled_reason"]
    refused = tenant.admin.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "webhook_disabled"
    # Enabled again by an admin, with its count starting over.
    again = tenant.admin.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": True}).get_json()
    assert (again["enabled"], again["consecutive_failures"], again["disabled_at"]) == (True, 0, None)


def test_private_targets_are_refused_without_the_setting(make_tenant, receiver, app):
    tenant = make_tenant("Guard")
    assert app.config["WEBHOOK_ALLOW_PRIVATE"] is False
    for url in (
        receiver.url,
        "http://localhost:9/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.8/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://2130706433/x",
    ):
        response = tenant.admin.post("/api/v1/webhooks", json={"url": url})
        assert response.status_code == 400, (url, response.get_json())
        assert response.get_json()["error"]["details"]["field"] == "url"
    for url in ("ftp://example.com/", "http://user:pw@93.184.216.34/", "not a url"):
        assert tenant.admin.post("/api/v1/webhooks", json={"url": url}).status_code == 400
    # A public address is accepted (nothing is sent to it here).
    public = tenant.admin.post("/api/v1/webhooks", json={"url": "https://93.184.216.34/in"})
    assert public.status_code == 201
    assert (
        tenant.admin.patch(
            f"/api/v1/webhooks/{public.get_json()['id']}", json={"url": receiver.url}
        ).status_code
        == 400
    )


def test_the_target_is_checked_again_at_delivery_time(receiver):
    """A URL saved while private targets were allowed is refused at the attempt once they are not."""
    claimed = deliveries.Claimed(uuid.uuid4(), 1, 1, 1, '{"id":"x"}', receiver.url, "whsec_x")
    refused = deliveries.attempt(claimed, deliveries.Settings(False, (1.0,), 10, 3.0), now=utcnow())
    assert refused.status is None
    assert refused.error.startswith("refused:")
    assert receiver.received == []
    allowed = deliveries.attempt(claimed, deliveries.Settings(True, (1.0,), 10, 3.0), now=utcnow())
    assert allowed.ok
    assert len(receiver.received) == 1


def _alerts_in_stream(services: Any, org_id: int) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(services.redis_url)
    return [
        json.loads(fields[b"data"])
        for _, fields in client.xrange(f"an:events:{org_id}")
        if fields[b"type"] == b"alert"
    ]


def test_an_alert_fired_by_tickets_created_through_the_api_arrives_once(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app, services
):
    tenant = make_live_tenant("Alerting")
    hook = _webhook(tenant.admin, receiver.url, receiver)
    rule = tenant.admin.post(
        "/api/v1/alerts",
        json={
            "name": "ticket surge",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": {"type": "above", "value": 2},
            "channels": [{"type": "webhook", "webhook_id": hook["id"]}, {"type": "websocket"}],
        },
    ).get_json()
    stamp = utcnow().replace(microsecond=0)
    for i in range(3):
        created = tenant.agent.post(
            "/api/v1/tickets", json={"subject": f"surge {i}", "created_at": stamp.isoformat()}
        )
        assert created.status_code == 201, created.get_json()
    hour = stamp.replace(minute=0, second=0)
    celery = live_app.extensions["celery"]

    def evaluate(at: datetime) -> list[dict[str, Any]]:
        # Two passes racing, as two beat ticks or two workers would.
        kwargs = {"now": at.isoformat(), "org_ids": [tenant.org_id]}
        passes = [celery.send_task("alerts.evaluate_due", kwargs=kwargs) for _ in range(2)]
        return [task.get(timeout=60) for task in passes]

    results = evaluate(hour + timedelta(hours=1, seconds=30))
    assert sum(r["transitions"] for r in results) == 1
    (fired,) = receiver.wait_for(1)
    assert fired.signature_ok
    assert fired.type == "alert.firing"
    data = fired.body["data"]
    assert (data["alert_id"], data["state"], data["value"], data["count"]) == (rule["id"], "firing", 3, 3)
    assert datetime.fromisoformat(data["bucket"]) == hour
    # The hour after holds no ticket: the rule resolves, once.
    evaluate(hour + timedelta(hours=2, seconds=30))
    got = receiver.wait_for(2)
    assert [r.type for r in got] == ["alert.firing", "alert.resolved"]
    time.sleep(2)  # nothing else is on its way
    assert len(receiver.received) == 2
    events = tenant.viewer.get(f"/api/v1/alerts/{rule['id']}/events").get_json()["items"]
    assert [(e["state"], e["value"]) for e in events] == [("ok", 0), ("firing", 3)]
    messages = _alerts_in_stream(services, tenant.org_id)
    assert [(m["alert_id"], m["state"], m["value"]) for m in messages] == [
        (rule["id"], "firing", 3),
        (rule["id"], "ok", 0),
    ]
    assert set(messages[0]) == {"alert_id", "name", "state", "bucket", "value", "score"}
