"""A socket may send subscribe and resume at a bounded rate (a burst, then so many a minute), and a
resume reaches back a bounded time; past either the client is told, and the socket stays open."""

from __future__ import annotations

import json
import time

import pytest
import redis

from tests.e2e.test_websocket import _drain, _open, _receive_until
from webapp.analytics import read_time
from webapp.api.ws.budget import MessageBudget
from webapp.config import from_environment
from webapp.infra.time_windows import window_of
from webapp.live import events

pytestmark = pytest.mark.worker

SETTINGS = from_environment()  # what the web process under test runs with


def test_a_subscribe_flood_is_answered_with_errors_after_the_burst(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    burst = SETTINGS["WS_COSTLY_MESSAGES_BURST"]
    for i in range(burst + 5):
        ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 30 + i}))
    answers = [m for m in _drain(ws, 2.0) if m["type"] in ("subscription_data", "error")]
    assert [m["type"] for m in answers] == ["subscription_data"] * burst + ["error"] * 5
    assert "too many subscribe and resume messages" in answers[-1]["data"]["message"]
    ws.send(json.dumps({"type": "ping"}))
    _receive_until(ws, lambda m: m["type"] == "pong")
    ws.close()


def test_past_the_budget_each_refused_message_holds_the_sockets_next_read(web_server, make_live_tenant):
    # A client flooding subscribe is slowed to the pace of its refusals (REFUSAL_PACE_MS each).
    hold = SETTINGS["REFUSAL_PACE_MS"] / 1000
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    burst = SETTINGS["WS_COSTLY_MESSAGES_BURST"]
    refused = 6
    for i in range(burst + refused):
        ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 30 + i}))
    errors_at = []
    while len(errors_at) < refused:
        _receive_until(ws, lambda m: m["type"] == "error")
        errors_at.append(time.monotonic())
    assert errors_at[-1] - errors_at[0] >= (refused - 1) * hold * 0.9
    ws.close()


def test_a_resume_from_the_beginning_reaches_back_a_bounded_time(web_server, make_live_tenant, services):
    tenant = make_live_tenant()
    client = redis.Redis.from_url(services.redis_url)
    old_ms = int((time.time() - SETTINGS["WS_RESUME_MAX_SECONDS"] - 600) * 1000)
    old_id = client.xadd(
        events.stream_key(tenant.org_id),
        {"type": "metric_update", "data": json.dumps({"ticket_id": -1})},
        id=f"{old_ms}-0",
    )
    web_server.request("POST", "/api/v1/tickets", tenant.users["agent"]["token"], {})
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "resume", "last_event_id": "0-0"}))
    seen = _drain(ws, 1.5)
    assert seen[0]["type"] == "error"
    assert "WS_RESUME_MAX_SECONDS" in seen[0]["data"]["message"]
    replayed = [m for m in seen if m["type"] == "metric_update"]
    assert len(replayed) == 1
    assert replayed[0]["id"] != old_id.decode()
    ws.close()


def test_a_resume_from_an_old_id_with_nothing_missed_says_nothing_is_lost(web_server, make_live_tenant):
    """An empty stream's 0-0 (or an id from before an hour of quiet) lies before the window, but no event
    falls between it and the window: the events after it come, with no error."""
    tenant = make_live_tenant()
    ws, hello = _open(web_server, tenant)
    assert hello["id"] == "0-0"
    ws.close()
    web_server.request("POST", "/api/v1/tickets", tenant.users["agent"]["token"], {})
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "resume", "last_event_id": "0-0"}))
    seen = _drain(ws, 1.5)
    assert [m["type"] for m in seen if m["type"] != "pong"] == ["metric_update"], seen
    ws.close()


def test_the_budget_refills_at_its_rate():
    budget = MessageBudget(burst=2, per_minute=600)  # one every 0.1 s
    assert budget.take() == 0
    assert budget.take() == 0
    assert 0 < budget.take() <= 0.1
    time.sleep(0.12)
    assert budget.take() == 0


def test_past_the_organizations_read_time_a_subscribe_that_must_compute_is_refused(
    web_server, make_live_tenant, services
):
    """Values no cache holds cost the organization's sockets' read time (WS_READ_SECONDS_PER_MINUTE):
    a socket's subscribe past it gets an error and stays open."""
    tenant = make_live_tenant()
    _spend_the_sockets_read_time(services, tenant.org_id)
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"]}))
    first, _ = _receive_until(ws, lambda m: m["type"] in ("subscription_data", "error"))
    assert first["type"] == "subscription_data"
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "filters": {"priority": ["high"]}}))
    refused, _ = _receive_until(ws, lambda m: m["type"] in ("subscription_data", "error"))
    assert refused["type"] == "error"
    assert "still served" in refused["data"]["message"]
    ws.send(json.dumps({"type": "ping"}))
    _receive_until(ws, lambda m: m["type"] == "pong")
    ws.close()


def test_past_the_organizations_read_time_a_metric_update_names_the_values_it_leaves_out(
    web_server, make_live_tenant, services
):
    """A metric_update whose fresh values would cost read time past the budget goes without them and
    says which subscribed metrics moved without values, and why (not silence, which reads as "none of
    your metrics moved")."""
    tenant = make_live_tenant()
    _spend_the_sockets_read_time(services, tenant.org_id)
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count", "backlog"], "interval": 3600}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    status, _ = web_server.request("POST", "/api/v1/tickets", tenant.users["agent"]["token"], {})
    assert status == 201
    update, _ = _receive_until(ws, lambda m: m["type"] == "metric_update")
    data = update["data"]
    assert "values" not in data, data
    assert set(data["values_omitted"]) == {"ticket_count", "backlog"}, data
    assert all("WS_READ_SECONDS_PER_MINUTE" in reason for reason in data["values_omitted"].values()), data
    ws.close()


def _spend_the_sockets_read_time(services, org_id: int) -> None:
    """Charge the organization's socket read time past its budget for this minute, as other web
    processes would have: the server learns it at its next charge."""
    index, _ = window_of(time.time())
    redis.Redis.from_url(services.redis_url).incrbyfloat(
        read_time.sockets(0).windows.key(org_id, index), SETTINGS["WS_READ_SECONDS_PER_MINUTE"] + 5
    )
