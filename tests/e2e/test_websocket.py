"""A real WebSocket client against the real web process and worker."""

from __future__ import annotations

import json
import time

import pytest
import websocket

pytestmark = pytest.mark.worker


def _connect(web, path: str, **kwargs):
    return websocket.create_connection(f"ws://127.0.0.1:{web.port}{path}", timeout=5, **kwargs)


def _open(web, tenant, role="viewer", query=""):
    token = tenant.users[role]["token"]
    ws = _connect(
        web, f"/api/v1/ws/analytics/{tenant.org_id}{query}", header=[f"Authorization: Bearer {token}"]
    )
    hello = json.loads(ws.recv())
    assert hello["type"] == "connected"
    return ws, hello


def _receive_until(ws, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            break
        seen.append(message)
        if predicate(message):
            return message, seen
    raise AssertionError(f"no matching message; got {[m['type'] for m in seen]}")


def _drain(ws, seconds=0.5):
    out = []
    ws.settimeout(seconds)
    while True:
        try:
            out.append(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            return out


def test_metric_update_after_ticket_created(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 30}))
    data, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    before = data["data"]["metrics"]["ticket_count"]["value"]

    started = time.monotonic()
    status, ticket = web_server.request(
        "POST", "/api/v1/tickets", tenant.users["agent"]["token"], {"priority": "high"}
    )
    assert status == 201
    update, _ = _receive_until(ws, lambda m: m["type"] == "metric_update", timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert update["organization_id"] == tenant.org_id
    assert "ticket_count" in update["data"]["metrics"]
    assert update["data"]["ticket_id"] == ticket["id"]
    assert update["data"]["values"]["ticket_count"]["value"] == before + 1
    assert update["id"]
    ws.close()


def test_ping_errors_and_job_updates(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "ping"}))
    pong, _ = _receive_until(ws, lambda m: m["type"] == "pong")
    assert set(pong) >= {"type", "organization_id", "timestamp", "data", "id"}
    for bad in [
        "not json",
        json.dumps([1]),
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe", "metrics": ["nope"]}),
        json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 1}),
    ]:
        ws.send(bad)
        error, _ = _receive_until(ws, lambda m: m["type"] == "error")
        assert error["data"]["message"]
    status, accepted = web_server.request(
        "POST", "/api/v1/analytics/refresh-cache", tenant.users["admin"]["token"]
    )
    assert status == 202
    done, seen = _receive_until(
        ws, lambda m: m["type"] == "job_update" and m["data"]["state"] == "succeeded", timeout=15
    )
    assert done["data"]["job_id"] == accepted["job_id"]
    states = [m["data"]["state"] for m in seen if m["type"] == "job_update"]
    assert states[0] in ("queued", "running")
    ws.close()


def test_other_organization_receives_nothing(web_server, make_live_tenant):
    alpha = make_live_tenant("Alpha")
    beta = make_live_tenant("Beta")
    ws_beta, _ = _open(web_server, beta)
    ws_alpha, _ = _open(web_server, alpha)
    web_server.request("POST", "/api/v1/tickets", alpha.users["agent"]["token"], {})
    _receive_until(ws_alpha, lambda m: m["type"] == "metric_update")
    assert _drain(ws_beta, 1.0) == []
    ws_alpha.close()
    ws_beta.close()


def test_resume_replays_exactly_the_missed_events(web_server, make_live_tenant):
    tenant = make_live_tenant()
    agent = tenant.users["agent"]["token"]
    ws, _ = _open(web_server, tenant)
    web_server.request("POST", "/api/v1/tickets", agent, {})
    first, _ = _receive_until(ws, lambda m: m["type"] == "metric_update")
    ws.close()

    missed = []
    for _ in range(3):
        _, ticket = web_server.request("POST", "/api/v1/tickets", agent, {})
        missed.append(ticket["id"])

    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "resume", "last_event_id": first["id"]}))
    replayed = [m for m in _drain(ws, 1.0) if m["type"] == "metric_update"]
    assert [m["data"]["ticket_id"] for m in replayed] == missed
    ids = [m["id"] for m in replayed]
    assert len(set(ids)) == len(ids)
    web_server.request("POST", "/api/v1/tickets", agent, {})
    live = [m for m in _drain(ws, 1.0) if m["type"] == "metric_update"]
    assert len(live) == 1
    assert live[0]["id"] not in ids
    ws.close()


def test_one_time_ticket_and_legacy_token(web_server, make_live_tenant):
    tenant = make_live_tenant()
    status, body = web_server.request("POST", "/api/v1/ws/ticket", tenant.users["viewer"]["token"])
    assert status == 200
    ws = _connect(web_server, body["url"])
    assert json.loads(ws.recv())["type"] == "connected"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as reused:
        _connect(web_server, body["url"])
    assert reused.value.status_code == 401
    token = tenant.users["viewer"]["token"]
    ws = _connect(web_server, f"/api/v1/ws/analytics/{tenant.org_id}?token={token}")
    assert json.loads(ws.recv())["type"] == "connected"
    ws.close()


def test_refusals(web_server, make_live_tenant):
    alpha = make_live_tenant("Alpha")
    beta = make_live_tenant("Beta")
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        _connect(web_server, f"/api/v1/ws/analytics/{alpha.org_id}")
    assert missing.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as bad:
        _connect(web_server, f"/api/v1/ws/analytics/{alpha.org_id}", header=["Authorization: Bearer x.y.z"])
    assert bad.value.status_code == 401
    token = alpha.users["viewer"]["token"]
    with pytest.raises(websocket.WebSocketBadStatusException) as origin:
        _connect(
            web_server,
            f"/api/v1/ws/analytics/{alpha.org_id}",
            header=[f"Authorization: Bearer {token}"],
            origin="https://evil.example",
        )
    assert origin.value.status_code == 403
    ws = _connect(
        web_server, f"/api/v1/ws/analytics/{beta.org_id}", header=[f"Authorization: Bearer {token}"]
    )
    frame = ws.recv_data_frame(control_frame=True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1008
    ws.close()
