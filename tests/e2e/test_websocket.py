"""A real WebSocket client against the real web process and worker."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import redis
import websocket
from flask_jwt_extended import create_access_token

from tests.e2e.conftest import PING_INTERVAL
from webapp.api.ws import session as ws_session
from webapp.api.ws.budget import Limits
from webapp.live import events
from webapp.live.connection import Connection
from webapp.tickets import seeding

pytestmark = pytest.mark.worker


def _connect(web, path: str, **kwargs):
    return websocket.create_connection(f"ws://127.0.0.1:{web.port}{path}", timeout=10, **kwargs)


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


def _seen_then_missed(web_server, tenant) -> tuple[dict, list[int]]:
    """A socket's last metric_update before it closed, and the tickets written while it was away."""
    agent = tenant.users["agent"]["token"]
    ws, _ = _open(web_server, tenant)
    web_server.request("POST", "/api/v1/tickets", agent, {})
    first, _ = _receive_until(ws, lambda m: m["type"] == "metric_update")
    ws.close()
    return first, [web_server.request("POST", "/api/v1/tickets", agent, {})[1]["id"] for _ in range(3)]


def test_resume_replays_exactly_the_missed_events(web_server, make_live_tenant):
    tenant = make_live_tenant()
    agent = tenant.users["agent"]["token"]
    first, missed = _seen_then_missed(web_server, tenant)

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


def test_a_resumed_greeting_carries_the_resume_point_not_the_stream_end(web_server, make_live_tenant):
    """A socket opened with ?last_event_id= greets before it replays: a client that loses it right after
    the greeting and resumes from the greeting's id must still get the missed events."""
    tenant = make_live_tenant()
    first, missed = _seen_then_missed(web_server, tenant)

    ws, hello = _open(web_server, tenant, query=f"?last_event_id={first['id']}")
    assert hello["id"] == first["id"]
    ws.close()  # lost before the replay was read
    ws, hello = _open(web_server, tenant, query=f"?last_event_id={hello['id']}")
    replayed = [m for m in _drain(ws, 1.0) if m["type"] == "metric_update"]
    assert [m["data"]["ticket_id"] for m in replayed] == missed
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


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"Sec-WebSocket-Version": "8"}, 426, "Sec-WebSocket-Version"),
        ({"Sec-WebSocket-Version": None}, 426, "Sec-WebSocket-Version"),
        ({"Sec-WebSocket-Key": None}, 400, "Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "not base64!"}, 400, "Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": base64.b64encode(b"short").decode()}, 400, "Sec-WebSocket-Key"),
        ({"Connection": "keep-alive"}, 400, None),
        # No upgrade asked for at all: 426 naming the protocol (RFC 6455 4.2.2).
        ({"Upgrade": None, "Connection": None}, 426, None),
        ({"Sec-WebSocket-Key": "\xe9AAAAAAAAAAAAAAAAAAAA=="}, 400, "Sec-WebSocket-Key"),
        ({"Connection": "Upgrade, \xe9"}, 400, "Connection"),
        ({"Sec-WebSocket-Protocol": "\xe9"}, 400, "Sec-WebSocket-Protocol"),
    ],
)
def test_a_handshake_rfc_6455_does_not_allow_is_a_4xx(web_server, make_live_tenant, change, status, field):
    tenant = make_live_tenant()
    headers = {
        "Authorization": f"Bearer {tenant.users['viewer']['token']}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Sec-WebSocket-Version": "13",
    }
    for name, value in change.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=10)
    try:
        conn.request("GET", f"/api/v1/ws/analytics/{tenant.org_id}", headers=headers)
        answer = conn.getresponse()
        body = json.loads(answer.read())
    finally:
        conn.close()
    assert answer.status == status, body
    assert body["error"]["details"].get("field") == field
    if status == 426 and field:
        assert answer.getheader("Sec-WebSocket-Version") == "13"
    if status == 426 and not field:
        assert answer.getheader("Upgrade") == "websocket"
    # The refusal kept no socket slot: the organization's socket opens as before.
    ws, _ = _open(web_server, tenant)
    ws.close()


def test_a_refused_handshake_leaves_its_one_time_ticket_usable(web_server, make_live_tenant):
    tenant = make_live_tenant()
    status, issued = web_server.request("POST", "/api/v1/ws/ticket", tenant.users["viewer"]["token"])
    assert status == 200, issued
    conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=10)
    try:
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"}
        headers["Sec-WebSocket-Key"] = base64.b64encode(b"0123456789abcdef").decode()
        conn.request("GET", issued["url"], headers=headers)
        assert conn.getresponse().status == 426
    finally:
        conn.close()
    ws = _connect(web_server, issued["url"])
    assert json.loads(ws.recv())["type"] == "connected"
    ws.close()


def _close_code(ws, timeout: float) -> int:
    """Read frames (answering pings) until the server's close frame; its status code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big")
    raise AssertionError(f"the server did not close the socket within {timeout}s")


def test_export_progress_and_completion_arrive(web_server, make_live_tenant, services):
    tenant = make_live_tenant()
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
        seeding.seed_tickets(conn, org_id=tenant.org_id, tickets=5000, days=20, seed=7)
        conn.commit()
    ws, _ = _open(web_server, tenant)
    status, accepted = web_server.request(
        "POST",
        "/api/v1/analytics/export",
        tenant.users["viewer"]["token"],
        {"format": "csv", "dataset": "tickets", "query": {}},
    )
    assert status == 202, accepted
    job_id = accepted["job_id"]

    def final(m):
        return (
            m["type"] == "job_update" and m["data"]["job_id"] == job_id and m["data"]["state"] == "succeeded"
        )

    done, seen = _receive_until(ws, final, timeout=30)
    updates = [m["data"] for m in seen if m["type"] == "job_update" and m["data"]["job_id"] == job_id]
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress), progress
    running = [u["progress"] for u in updates if u["state"] == "running"]
    assert running[0] < 1.0
    assert running[-1] == 1.0  # reported before the file is published, then the final state
    ids = [m["id"] for m in seen if m["type"] == "job_update"]
    assert len(set(ids)) == len(ids)
    result = done["data"]["result"]
    assert result["rows"] == 5000
    assert result["download_url"]
    ws.close()


def test_every_web_process_delivers_to_its_own_sockets(web_server, make_live_tenant):
    tenant = make_live_tenant()
    opened: list[tuple[Any, int]] = []
    # Whichever idle gunicorn worker wakes first accepts, so one worker may take a run of them:
    # sockets are opened in parallel bursts until both hold some (after a burst that all went to
    # one worker, all but eight are closed again, below the per-organization cap of a process).
    with ThreadPoolExecutor(6) as pool:
        for _ in range(12):
            for ws, hello in pool.map(lambda _: _open(web_server, tenant), range(6)):
                opened.append((ws, hello["data"]["server_pid"]))
            pids = {pid for _, pid in opened}
            if len(pids) == 2 and len(opened) >= 8:
                break
            while len(opened) > 8:
                opened.pop()[0].close()
    assert len({pid for _, pid in opened}) == 2, "every socket landed on one gunicorn worker"
    sockets = [ws for ws, _ in opened]

    status, ticket = web_server.request("POST", "/api/v1/tickets", tenant.users["agent"]["token"], {})
    assert status == 201
    for ws in sockets:
        update, _ = _receive_until(ws, lambda m: m["type"] == "metric_update", timeout=2.0)
        assert update["data"]["ticket_id"] == ticket["id"]
    time.sleep(0.3)
    for ws in sockets:
        assert [m for m in _drain(ws, 0.05) if m["type"] == "metric_update"] == []
        ws.close()


def test_socket_closes_when_its_token_expires(web_server, make_live_tenant, base_app):
    tenant = make_live_tenant()
    viewer = tenant.users["viewer"]
    with base_app.app_context():
        token = create_access_token(
            str(viewer["id"]),
            additional_claims={"org_id": tenant.org_id, "role": "viewer"},
            expires_delta=timedelta(seconds=3),
        )
    started = time.monotonic()
    ws = _connect(
        web_server, f"/api/v1/ws/analytics/{tenant.org_id}", header=[f"Authorization: Bearer {token}"]
    )
    assert json.loads(ws.recv())["type"] == "connected"
    assert _close_code(ws, timeout=6) == 1008
    assert time.monotonic() - started < 5
    ws.close()


def test_oversized_message_is_refused_and_malformed_ones_answered(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    for bad in [
        b"\xff\xfe not utf-8",
        "null",
        json.dumps({"type": 5}),
        json.dumps({"type": "resume"}),
        json.dumps({"type": "resume", "last_event_id": "yesterday"}),
        json.dumps({"type": "unsubscribe", "metrics": "ticket_count"}),
        json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "filters": {"colour": ["red"]}}),
    ]:
        if isinstance(bad, bytes):
            ws.send_binary(bad)
        else:
            ws.send(bad)
        error, _ = _receive_until(ws, lambda m: m["type"] == "error")
        assert error["data"]["message"]
    ws.send(json.dumps({"type": "ping"}))
    _receive_until(ws, lambda m: m["type"] == "pong")

    ws.send("x" * (64 * 1024 + 1))
    assert _close_code(ws, timeout=5) == 1009
    ws.close()


def test_legacy_token_never_reaches_the_log(web_server, make_live_tenant):
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    path = f"/api/v1/ws/analytics/{tenant.org_id}"
    ws = _connect(web_server, f"{path}?token={token}")
    assert json.loads(ws.recv())["type"] == "connected"
    ws.close()
    # A refused upgrade goes through the access log (an accepted one is logged by nobody).
    with pytest.raises(websocket.WebSocketBadStatusException):
        _connect(web_server, f"{path}?token={token}", origin="https://evil.example")
    with pytest.raises(websocket.WebSocketBadStatusException):
        _connect(web_server, f"{path}?token={token}x")
    time.sleep(0.3)
    log = web_server.log_text()
    assert f'"GET {path} HTTP/1.1" 403' in log
    assert token not in log
    assert "token=" not in log


def test_server_pings_to_keep_the_connection_alive(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, hello = _open(web_server, tenant)
    started = time.monotonic()
    assert hello["data"]["ping_interval"] == PING_INTERVAL, (
        "the server ignores WS_PING_INTERVAL (webapp/config.py must read it into the config)"
    )
    ws.settimeout(PING_INTERVAL + 2)
    opcode, _ = ws.recv_data_frame(control_frame=True)  # websocket-client answers with a pong
    assert opcode == websocket.ABNF.OPCODE_PING
    assert time.monotonic() - started < PING_INTERVAL + 1
    # Answered pings keep the socket open past the next ping.
    time.sleep(PING_INTERVAL * 1.2)
    ws.send(json.dumps({"type": "ping"}))
    _receive_until(ws, lambda m: m["type"] == "pong")
    ws.close()


def test_revoked_token_is_refused(web_server, make_live_tenant):
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    status, _ = web_server.request("POST", "/api/v1/auth/logout", token)
    assert status == 200
    for query, header in ((f"?token={token}", []), ("", [f"Authorization: Bearer {token}"])):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            _connect(web_server, f"/api/v1/ws/analytics/{tenant.org_id}{query}", header=header)
        assert refused.value.status_code == 401


def test_a_client_that_stops_reading_is_dropped_without_delaying_others(
    web_server, make_live_tenant, services
):
    tenant = make_live_tenant()
    slow, _ = _open(web_server, tenant)
    fast, _ = _open(web_server, tenant)
    # 32 MB: far more than the socket buffers hold, so the slow socket's queue overflows.
    total, batch, padding = 2000, 100, "x" * 16384
    received: list[int] = []
    failure: list[BaseException] = []

    def read_fast() -> None:
        fast.settimeout(15)
        try:
            while len(received) < total:
                message = json.loads(fast.recv())
                if message["type"] == "job_update":
                    received.append(message["data"]["seq"])
        except Exception as exc:
            failure.append(exc)

    reader = threading.Thread(target=read_fast, daemon=True)
    reader.start()
    client = redis.Redis.from_url(services.redis_url)
    for seq in range(total):
        events.publish(client, tenant.org_id, "job_update", {"job_id": "flood", "seq": seq, "pad": padding})
        if seq % batch == batch - 1:
            # The fast client keeps up (never a queue's worth behind), however loaded the machine.
            deadline = time.monotonic() + 10
            while len(received) <= seq - batch and not failure and time.monotonic() < deadline:
                time.sleep(0.01)
    reader.join(20)
    assert not failure, failure
    assert received == list(range(total))

    # The slow socket holds what the buffers took, then ends: it was dropped, not waited for.
    slow.settimeout(5)
    slow_got = 0
    try:
        while slow.recv_data_frame(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
            slow_got += 1
    except websocket.WebSocketConnectionClosedException:
        pass
    assert slow_got < total
    fast.close()


def _assert_error(ws) -> dict:
    """The next error message, shaped like every server message."""
    error, _ = _receive_until(ws, lambda m: m["type"] == "error")
    assert set(error) >= {"type", "organization_id", "timestamp", "data", "id"}
    assert error["data"]["message"]
    return error


def _assert_usable(ws) -> None:
    ws.send(json.dumps({"type": "ping"}))
    _receive_until(ws, lambda m: m["type"] == "pong")


def test_malformed_messages_are_answered_and_the_socket_stays_open(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    for bad in [
        json.dumps({"type": "unsubscribe", "metrics": [[1]]}),
        json.dumps({"type": "unsubscribe", "metrics": [{"a": 1}]}),
        "[" * 5000 + "]" * 5000,
        json.dumps({"type": "resume", "last_event_id": "\u0661-\u0662"}),
    ]:
        ws.send(bad)
        _assert_error(ws)
        _assert_usable(ws)
    ws.close()


def test_a_subscribe_with_a_field_it_does_not_take_is_refused_by_name(web_server, make_live_tenant):
    """Ignored, `group_by` would be answered with ungrouped values as if they were what was asked."""
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "group_by": ["priority"]}))
    message = _assert_error(ws)["data"]["message"]
    assert "'group_by'" in message, message
    assert "filters" in message, message
    _assert_usable(ws)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 60, "filters": {}}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    ws.close()


def test_text_postgresql_cannot_store_is_refused(web_server, make_live_tenant):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    for value in ("a\0b", "\ud800"):
        subscribe = {"type": "subscribe", "metrics": ["ticket_count"], "filters": {"category": [value]}}
        ws.send(json.dumps(subscribe))
        assert "the message contains" in _assert_error(ws)["data"]["message"]
        _assert_usable(ws)
    ws.close()


def test_a_failure_no_check_foresaw_is_logged_and_answered(monkeypatch, caplog):
    # In process: no client input is known to reach this path any more (a NUL in a filter did).
    sent: list[str] = []
    conn = Connection(org_id=7, send_raw=sent.append, wake=lambda: None, abort=lambda: None)

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ws_session, "dispatch", broken)
    with caplog.at_level(logging.ERROR, logger=ws_session.__name__):
        ws_session.handle(
            ws_session.Peer(conn, stores=None, limits=Limits(10, 30, 3600)), json.dumps({"type": "ping"})
        )
    assert conn.alive
    [answer] = [json.loads(text) for text in sent]
    assert answer["type"] == "error"
    assert set(answer) >= {"type", "organization_id", "timestamp", "data", "id"}
    assert answer["data"]["message"]
    assert caplog.records[-1].exc_info is not None


def test_out_of_range_event_ids_are_refused_clearly(web_server, make_live_tenant):
    tenant = make_live_tenant()
    too_big = "99999999999999999999999-0"
    ws, _ = _open(web_server, tenant, query=f"?last_event_id={too_big}")
    error = _assert_error(ws)
    assert "last_event_id" in error["data"]["message"]
    _assert_usable(ws)
    for bad in (too_big, "1-18446744073709551616", "-1-0", "1"):
        ws.send(json.dumps({"type": "resume", "last_event_id": bad}))
        error = _assert_error(ws)
        assert "Redis" not in error["data"]["message"]
        assert "last_event_id" in error["data"]["message"]
        _assert_usable(ws)
    # The largest id there is: nothing can follow it, and that is no error.
    ws.send(json.dumps({"type": "resume", "last_event_id": "18446744073709551615-18446744073709551615"}))
    ws.send(json.dumps({"type": "ping"}))
    _, seen = _receive_until(ws, lambda m: m["type"] == "pong")
    assert [m["type"] for m in seen] == ["pong"]
    web_server.request("POST", "/api/v1/tickets", tenant.users["agent"]["token"], {})
    _receive_until(ws, lambda m: m["type"] == "metric_update")
    ws.close()


@pytest.mark.parametrize("size", [70 * 1024, 1024 * 1024])
def test_an_oversized_message_closes_cleanly_with_1009(web_server, make_live_tenant, size):
    tenant = make_live_tenant()
    ws, _ = _open(web_server, tenant)
    ws.send("x" * size)
    assert _close_code(ws, timeout=5) == 1009
    ws.close()


def test_logout_closes_open_sockets_of_the_token(web_server, make_live_tenant):
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    ws, _ = _open(web_server, tenant)
    status, _ = web_server.request("POST", "/api/v1/auth/logout", token)
    assert status == 200
    started = time.monotonic()
    _revoked_close(ws, started + 10)
    assert time.monotonic() - started < 8
    ws.close()


def _revoked_close(ws, deadline: float) -> list[str]:
    """Read until the server's close frame, which must say 1008 "revoked" before `deadline`; the types
    of the messages that came before it."""
    seen: list[str] = []
    while True:
        # Pings keep arriving, so a socket timeout alone would never end this loop.
        assert time.monotonic() < deadline, "the socket outlived its revoked token"
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        if opcode == websocket.ABNF.OPCODE_TEXT:
            seen.append(json.loads(frame.data)["type"])
    assert int.from_bytes(frame.data[:2], "big") == 1008
    assert b"revoked" in frame.data[2:]
    return seen


@pytest.mark.parametrize("ending", ["logout", "user deleted"])
def test_a_revoked_tokens_socket_is_sent_nothing_after_the_answer(web_server, make_live_tenant, ending):
    """Once a logout or a user's deletion has answered, the token's open socket gets no event of what
    follows (tickets written right after), and closes with 1008 well before the periodic check."""
    tenant = make_live_tenant()
    viewer, admin = tenant.users["viewer"], tenant.users["admin"]["token"]
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 3600}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    if ending == "logout":
        status, _ = web_server.request("POST", "/api/v1/auth/logout", viewer["token"])
    else:
        status, _ = web_server.request("DELETE", f"/api/v1/users/{viewer['id']}", admin)
    assert status in (200, 204)
    started = time.monotonic()
    for _ in range(5):
        assert web_server.request("POST", "/api/v1/tickets", admin, {})[0] == 201
    seen = _revoked_close(ws, started + 10)
    assert "metric_update" not in seen, seen
    assert time.monotonic() - started < 2.5
    ws.close()


def test_a_ticket_issued_before_logout_is_refused_after(web_server, make_live_tenant):
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    status, body = web_server.request("POST", "/api/v1/ws/ticket", token)
    assert status == 200
    status, _ = web_server.request("POST", "/api/v1/auth/logout", token)
    assert status == 200
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(web_server, body["url"])
    assert refused.value.status_code == 401


def test_sockets_are_told_when_redis_goes_away(web_server, make_live_tenant, stoppable_redis, services):
    """Events written while Redis is down are never published: an open socket is closed with 1013
    rather than left silent, so its client reconnects and reads afresh."""
    from tests.conftest import wait_redis

    tenant = make_live_tenant("RelayOutage")
    ws, _ = _open(web_server, tenant)
    stoppable_redis.stop()
    try:
        assert _close_code(ws, timeout=15) == 1013
    finally:
        stoppable_redis.start()
        wait_redis(services.redis_url)
    ws, hello = _open(web_server, tenant)  # and sockets open again once it is back
    assert hello["type"] == "connected"
    ws.close()


def test_a_subscription_on_the_business_clock(web_server, make_live_tenant):
    tenant, other = make_live_tenant(), make_live_tenant()
    ws, _ = _open(web_server, tenant)
    business = {"type": "subscribe", "metrics": ["response_time"], "clock": "business"}
    ws.send(json.dumps(business))
    error, _ = _receive_until(ws, lambda m: m["type"] == "error")
    assert "schedule" in error["data"]["message"]  # none yet
    office = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
    admin = tenant.users["admin"]["token"]
    status, schedule = web_server.request(
        "POST", "/api/v1/schedules", admin, {"name": "Office", "timezone": "UTC", "intervals": office}
    )
    assert status == 201
    status, foreign = web_server.request(
        "POST",
        "/api/v1/schedules",
        other.users["admin"]["token"],
        {"name": "O", "timezone": "UTC", "intervals": office},
    )
    ws.send(json.dumps({**business, "schedule_id": foreign["id"]}))
    error, _ = _receive_until(ws, lambda m: m["type"] == "error")
    assert "not found" in error["data"]["message"]
    ws.send(json.dumps({**business, "schedule_id": schedule["id"]}))
    data, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    assert data["data"]["clock"] == "business"
    assert data["data"]["schedule_id"] == schedule["id"]
    assert data["data"]["metrics"]["response_time"]["count"] == 0
    ws.close()


def test_a_business_subscription_ends_when_its_schedule_is_deleted(web_server, make_live_tenant):
    """Its periodic updates would count 0 business hours from then on: the socket is told at once
    (not at its next periodic update, an hour away here: found from outside) and the subscription
    ends; the socket's other subscriptions go on. A change of the schedule sends fresh values."""
    tenant = make_live_tenant()
    admin = tenant.users["admin"]["token"]
    office = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
    status, schedule = web_server.request(
        "POST", "/api/v1/schedules", admin, {"name": "Office", "timezone": "UTC", "intervals": office}
    )
    assert status == 201
    ws, _ = _open(web_server, tenant)
    business = {"type": "subscribe", "metrics": ["response_time"], "interval": 3600, "clock": "business"}
    ws.send(json.dumps({**business, "schedule_id": schedule["id"]}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    # A count on that clock too (its own group: other filters): a change of the schedule names only
    # the durations, yet this group is on the schedule and ends with it.
    counted = {**business, "metrics": ["backlog"], "filters": {"channel": ["email"]}}
    ws.send(json.dumps({**counted, "schedule_id": schedule["id"]}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 5}))
    _receive_until(ws, lambda m: m["type"] == "subscription_data")
    status, _ = web_server.request(
        "PATCH", f"/api/v1/schedules/{schedule['id']}", admin, {"intervals": office[:2]}
    )
    assert status == 200
    update, _ = _receive_until(ws, lambda m: m["type"] == "metric_update", timeout=5.0)
    assert update["data"]["schedule_id"] == schedule["id"]
    assert "response_time" in update["data"]["values"]
    status, _ = web_server.request("DELETE", f"/api/v1/schedules/{schedule['id']}", admin)
    assert status == 204
    error, _ = _receive_until(ws, lambda m: m["type"] == "error", timeout=5.0)
    other, _ = _receive_until(ws, lambda m: m["type"] == "error", timeout=5.0)
    messages = sorted([error["data"]["message"], other["data"]["message"]])
    assert all(f"schedule {schedule['id']} was deleted" in message for message in messages)
    assert "backlog" in messages[0]
    assert "response_time" in messages[1]
    # Afterwards only the calendar subscription's periodic updates come.
    for _ in range(2):
        periodic, _ = _receive_until(ws, lambda m: m["type"] == "periodic_update", timeout=8.0)
        assert periodic["data"]["clock"] == "calendar"
        assert set(periodic["data"]["metrics"]) == {"ticket_count"}
    ws.close()


def test_each_subscribe_keeps_its_own_filters_and_interval(web_server, make_live_tenant):
    """A second subscribe with other filters does not re-filter the first one's metrics: each metric's
    values (at once, in metric_update and periodically) are under the filters it was subscribed with."""
    tenant = make_live_tenant()
    agent = tenant.users["agent"]["token"]
    for category in ("billing", "billing", "shipping"):
        status, _ = web_server.request("POST", "/api/v1/tickets", agent, {"category": category})
        assert status == 201
    ws, _ = _open(web_server, tenant)
    ws.send(json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 5}))
    first, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    assert first["data"]["metrics"]["ticket_count"]["value"] == 3
    billing = {"category": ["billing"]}
    ws.send(json.dumps({"type": "subscribe", "metrics": ["backlog"], "interval": 60, "filters": billing}))
    second, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    assert set(second["data"]["metrics"]) == {"backlog"}
    assert (second["data"]["filters"], second["data"]["interval"]) == (billing, 60)
    assert second["data"]["metrics"]["backlog"]["value"] == 2
    # A new ticket outside billing moves the unfiltered count only.
    status, _ = web_server.request("POST", "/api/v1/tickets", agent, {"category": "shipping"})
    assert status == 201
    update, _ = _receive_until(ws, lambda m: m["type"] == "metric_update" and "values" in m["data"])
    values = update["data"]["values"]
    assert values["ticket_count"]["value"] == 4
    if "backlog" in values:  # sent when the update names backlog: under its own filter, unmoved
        assert values["backlog"]["value"] == 2
    # The first subscription's periodic update keeps its interval and no filters.
    periodic, _ = _receive_until(ws, lambda m: m["type"] == "periodic_update", timeout=8.0)
    assert (periodic["data"]["filters"], periodic["data"]["interval"]) == ({}, 5)
    assert set(periodic["data"]["metrics"]) == {"ticket_count"}
    # Subscribing a metric again moves it into the new message's group; the other group keeps the rest.
    ws.send(
        json.dumps({"type": "subscribe", "metrics": ["ticket_count"], "interval": 60, "filters": billing})
    )
    moved, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    assert set(moved["data"]["metrics"]) == {"ticket_count", "backlog"}
    assert moved["data"]["metrics"]["ticket_count"]["value"] == 2
    ws.send(json.dumps({"type": "subscribe", "metrics": ["backlog"], "interval": 60}))
    alone, _ = _receive_until(ws, lambda m: m["type"] == "subscription_data")
    assert (set(alone["data"]["metrics"]), alone["data"]["filters"]) == ({"backlog"}, {})
    assert alone["data"]["metrics"]["backlog"]["value"] == 4
    # Unsubscribing leaves the rest.
    ws.send(json.dumps({"type": "unsubscribe", "metrics": ["ticket_count"]}))
    left, _ = _receive_until(ws, lambda m: m["type"] == "unsubscribed")
    assert left["data"]["metrics"] == ["backlog"]
    ws.close()
