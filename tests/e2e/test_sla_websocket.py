"""A breach reaches a real WebSocket client as sla_breach, the way metric_update does."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import websocket

from tests.conftest import wait_redis

pytestmark = pytest.mark.worker


def _open(web, tenant):
    token = tenant.users["viewer"]["token"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{web.port}/api/v1/ws/analytics/{tenant.org_id}",
        timeout=10,
        header=[f"Authorization: Bearer {token}"],
    )
    assert json.loads(ws.recv())["type"] == "connected"
    return ws


def test_a_breach_is_pushed_to_the_organizations_sockets(web_server, make_live_tenant, live_app, services):
    wait_redis(services.redis_url)
    tenant = make_live_tenant()
    other = make_live_tenant("Other")
    ws = _open(web_server, tenant)
    ws_other = _open(web_server, other)
    # Urgent: a reply within an hour; this ticket's hour ended a few seconds ago.
    created = datetime.now(UTC) - timedelta(hours=1, seconds=5)
    status, ticket = web_server.request(
        "POST",
        "/api/v1/tickets",
        tenant.users["agent"]["token"],
        {"priority": "urgent", "created_at": created.isoformat()},
    )
    assert status == 201
    celery = live_app.extensions["celery"]
    celery.send_task("sla.record_breaches", kwargs={"org_ids": [tenant.org_id, other.org_id]}).get(timeout=60)
    deadline = time.monotonic() + 10
    breach = None
    while breach is None and time.monotonic() < deadline:
        message = json.loads(ws.recv())
        if message["type"] == "sla_breach":
            breach = message
    assert breach is not None, "no sla_breach message"
    assert breach["organization_id"] == tenant.org_id
    assert breach["id"]
    assert breach["data"]["ticket_id"] == ticket["id"]
    assert breach["data"]["metric"] == "first_reply"
    assert datetime.fromisoformat(breach["data"]["breach_at"]) == datetime.fromisoformat(
        ticket["created_at"]
    ) + timedelta(hours=1)
    # The other organization's socket hears nothing of it.
    ws_other.settimeout(1.0)
    seen = []
    try:
        while True:
            seen.append(json.loads(ws_other.recv())["type"])
    except websocket.WebSocketTimeoutException:
        pass
    assert "sla_breach" not in seen
    ws.close()
    ws_other.close()
