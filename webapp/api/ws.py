"""Live analytics over WebSocket: job and metric updates per organization, subscriptions and resume."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_jwt_extended import decode_token
from flask_sock import Sock
from pydantic import BaseModel

from webapp.analytics import cache
from webapp.analytics.live import current_values
from webapp.analytics.metrics import METRICS
from webapp.api.errors import error_response
from webapp.api.spec import document
from webapp.auth import (
    REQUIRED_CLAIMS,
    ROLE_RANK,
    Principal,
    current_claims,
    current_principal,
    require_role,
    token_revoked,
)
from webapp.db import session_factory
from webapp.dimensions import FilterError, parse_filters
from webapp.redis_client import get_redis
from webapp.relay import Connection, get_relay
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__, url_prefix="/ws")
sock = Sock()

TICKET_SECONDS = 30
MIN_INTERVAL = 5
MAX_INTERVAL = 3600
MAX_MESSAGE_BYTES = 64 * 1024
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# The live window rolls on; a cached value may lag it by at most this long.
LIVE_TTL_SECONDS = 15


class WsTicket(BaseModel):
    ticket: str
    expires_in: int
    url: str


def _ticket_key(ticket: str) -> str:
    return f"an:wsticket:{ticket}"


@bp.post("/ticket")
@document(
    "A one-time ticket (valid 30 s) to open the WebSocket without a header",
    tag="live",
    responses={200: WsTicket},
    errors=(401, 503),
)
@require_role("viewer")
def issue_ticket() -> Response:
    principal = current_principal()
    ticket = secrets.token_urlsafe(32)
    payload = {
        "user_id": principal.user_id,
        "org_id": principal.org_id,
        "role": principal.role,
        "exp": current_claims()["exp"],
    }
    try:
        get_redis().set(_ticket_key(ticket), json.dumps(payload), ex=TICKET_SECONDS)
    except redis.RedisError:
        return error_response(
            503, "tickets are unavailable while Redis is down; use the Authorization header"
        )
    return jsonify(
        {
            "ticket": ticket,
            "expires_in": TICKET_SECONDS,
            "url": f"/api/v1/ws/analytics/{principal.org_id}?ticket={ticket}",
        }
    )


@dataclass
class Identity:
    principal: Principal
    expires_at: float


def _from_token(token: str) -> Identity | None:
    try:
        claims = decode_token(token)
    except Exception:
        return None
    if any(c not in claims for c in REQUIRED_CLAIMS) or claims.get("type") != "access":
        return None
    if claims["role"] not in ROLE_RANK or not isinstance(claims["org_id"], int):
        return None
    if token_revoked(claims):
        return None
    return Identity(Principal(int(claims["sub"]), claims["org_id"], claims["role"]), float(claims["exp"]))


def _from_ticket(ticket: str) -> Identity | None:
    try:
        raw = get_redis().getdel(_ticket_key(ticket))
    except redis.RedisError:
        return None
    if raw is None:
        return None
    data = json.loads(raw)
    return Identity(Principal(data["user_id"], data["org_id"], data["role"]), float(data["exp"]))


def _origin_allowed() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser: Origin protects browsers' ambient credentials only
    allowed = current_app.config.get("WS_ALLOWED_ORIGINS") or []
    if origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == request.host


@bp.before_request
def authenticate_socket() -> Response | None:
    """Refuse the upgrade (401/403) before the socket is accepted."""
    if request.endpoint != "api.ws.analytics_socket":
        return None
    if not _origin_allowed():
        return error_response(403, "origin not allowed")
    header = request.headers.get("Authorization", "")
    identity = None
    if header.startswith("Bearer "):
        identity = _from_token(header[7:].strip())
    elif request.args.get("ticket"):
        identity = _from_ticket(request.args["ticket"])
    elif request.args.get("token"):
        identity = _from_token(request.args["token"])
    if identity is None or identity.expires_at <= time.time():
        return error_response(401, "a valid access token or one-time ticket is required")
    g.ws_identity = identity
    return None


@dataclass
class Subscription:
    metrics: set[str] = field(default_factory=set)
    filters: dict[str, list[str | None]] = field(default_factory=dict)
    interval: float = 30.0
    next_due: float = 0.0


def _envelope(conn: Connection, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "organization_id": conn.org_id,
        "timestamp": utcnow().isoformat(),
        "data": data,
        "id": conn.last_sent_id,
    }


def _values(
    app: Flask, org_id: int, metrics: list[str], filters: dict[str, list[str | None]]
) -> dict[str, Any]:
    """Fresh values for a subscription, through the cache (one computation per distinct subscription)."""
    with app.app_context():
        families = {f for m in metrics for f in METRICS[m].families}
        params = {"kind": "live", "metrics": sorted(metrics), "filters": filters}
        session = session_factory()()
        try:

            def compute() -> dict[str, Any]:
                now = utcnow()
                return current_values(
                    session, org_id=org_id, metrics=sorted(metrics), filters=filters, now=now
                )

            value, _ = cache.read_through(
                get_redis(), org_id, families, params, compute, ttl=LIVE_TTL_SECONDS
            )
            return value
        finally:
            session.close()


def _parse_subscribe(message: dict[str, Any]) -> tuple[set[str], dict[str, list[str | None]], float]:
    metrics = message.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"metrics must be a non-empty list; allowed: {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; allowed: {', '.join(METRICS)}")
    interval = message.get("interval", 30)
    if not isinstance(interval, int | float) or isinstance(interval, bool):
        raise ValueError("interval must be a number of seconds")
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise ValueError(f"interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds")
    raw_filters = message.get("filters") or {}
    if not isinstance(raw_filters, dict):
        raise ValueError("filters must be an object")
    try:
        filters = parse_filters(raw_filters)
        extra = set(raw_filters) - set(filters)
        if extra:
            raise FilterError(f"unknown filter {sorted(extra)[0]!r}", sorted(extra)[0])
    except FilterError as exc:
        raise ValueError(str(exc)) from exc
    return set(metrics), filters, float(interval)


@sock.route("/analytics/<int:org_id>", bp=bp)
@document(
    "WebSocket (upgrade): job_update and metric_update of the organization, subscriptions, resume",
    tag="live",
    errors=(401, 403, 404),
)
def analytics_socket(ws: Any, org_id: int) -> None:
    """The socket's own loop: client messages, relayed events, periodic updates and token expiry."""
    identity: Identity = g.ws_identity
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if identity.principal.org_id != org_id:
        ws.close(reason=POLICY_VIOLATION, message="organization does not match the token")
        return
    ws.sock = _OneWriter(ws.sock)
    sub = Subscription()
    # simple-websocket sets `ws.event` when a message or the close arrives; the relay sets it too,
    # so this thread sleeps on one event for both.
    conn = Connection(org_id=org_id, send_raw=ws.send, wake=ws.event.set, abort=lambda: _abort(ws))
    relay = get_relay(app)
    client = get_redis()
    resume_from = request.args.get("last_event_id")
    try:
        relay.register(conn)
    except redis.RedisError:
        log.warning("socket refused: cannot follow the events of org=%s", org_id)
        ws.close(reason=TRY_AGAIN_LATER, message="live updates are unavailable; try again later")
        return
    try:
        hello = {
            "user_id": identity.principal.user_id,
            "role": identity.principal.role,
            "server_pid": os.getpid(),
            "ping_interval": app.config["SOCK_SERVER_OPTIONS"].get("ping_interval"),
        }
        conn.send(_envelope(conn, "connected", hello))
        if resume_from is not None and _valid_id(resume_from):
            # Before any live event, so the missed ones arrive first and in order.
            conn.replay(client, resume_from)

        def augment(event: dict[str, Any]) -> dict[str, Any]:
            extra = _fresh(app, org_id, sub, event["data"]) if event["type"] == "metric_update" else {}
            # Unchanged, the event goes out as the JSON the relay made once for every socket.
            return {**event, "data": {**event["data"], **extra}} if extra else event

        while conn.alive:
            now = time.time()
            # Closing while registered: a close frame stuck behind a full buffer is swept like a send.
            if now >= identity.expires_at:
                conn.guarded(ws.close, POLICY_VIOLATION, "token expired")
                return
            if conn.dropped:
                conn.guarded(ws.close, TRY_AGAIN_LATER, "too far behind; reconnect and resume")
                return
            timeout = identity.expires_at - now
            if sub.metrics:
                timeout = max(0.0, min(timeout, sub.next_due - now))
            ws.event.wait(timeout)
            raw = ws.receive(timeout=0)  # raises ConnectionClosed once the client is gone
            if raw is not None:
                _handle(conn, sub, raw, app, client)
            conn.flush(augment)
            if sub.metrics and time.time() >= sub.next_due:
                sub.next_due = time.time() + sub.interval
                _send_values(conn, sub, app, "periodic_update")
    finally:
        relay.unregister(conn)


def _fresh(app: Flask, org_id: int, sub: Subscription, data: dict[str, Any]) -> dict[str, Any]:
    """Fresh values of the changed metrics this socket subscribed to ({} when none)."""
    wanted = sorted(sub.metrics & set(data.get("metrics", [])))
    if not wanted:
        return {}
    try:
        return {"values": _values(app, org_id, wanted, sub.filters)["metrics"]}
    except Exception:
        log.exception("fresh values failed org=%s", org_id)
        return {}


class _OneWriter:
    """The socket with one write at a time.

    simple-websocket's own thread writes too (pings, pongs, the close answer): two sends blocked on
    a full buffer would otherwise interleave their frames' bytes and corrupt the stream.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _abort(ws: Any) -> None:
    """Shut the TCP connection down, which unblocks a send stuck on a client that stopped reading."""
    with contextlib.suppress(OSError):
        ws.sock.shutdown(socket.SHUT_RDWR)


def _send_values(conn: Connection, sub: Subscription, app: Flask, kind: str) -> None:
    data = _values(app, conn.org_id, sorted(sub.metrics), sub.filters)
    conn.send(_envelope(conn, kind, {**data, "interval": sub.interval, "filters": sub.filters}))


def _error(conn: Connection, message: str) -> None:
    conn.send(_envelope(conn, "error", {"message": message}))


def _handle(conn: Connection, sub: Subscription, raw: str | bytes, app: Flask, client: redis.Redis) -> None:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        _error(conn, "messages must be JSON objects")
        return
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        _error(conn, "messages must be JSON objects with a type")
        return
    kind = message["type"]
    if kind == "ping":
        conn.send(_envelope(conn, "pong", {}))
    elif kind == "subscribe":
        try:
            metrics, filters, interval = _parse_subscribe(message)
        except ValueError as exc:
            _error(conn, str(exc))
            return
        sub.metrics |= metrics
        if "filters" in message:
            sub.filters = filters
        sub.interval = interval
        sub.next_due = time.time() + interval
        _send_values(conn, sub, app, "subscription_data")
    elif kind == "unsubscribe":
        metrics = message.get("metrics")
        if not isinstance(metrics, list):
            _error(conn, "unsubscribe needs a list of metrics")
            return
        sub.metrics -= set(metrics)
        conn.send(_envelope(conn, "unsubscribed", {"metrics": sorted(sub.metrics)}))
    elif kind == "resume":
        last_id = message.get("last_event_id")
        if not isinstance(last_id, str) or not _valid_id(last_id):
            _error(conn, "resume needs last_event_id, the id of the last message received")
            return
        try:
            conn.replay(client, last_id)
        except redis.RedisError:
            _error(conn, "resume is unavailable while Redis is down; try again")
    else:
        _error(conn, f"unknown message type {kind!r}; allowed: subscribe, unsubscribe, ping, resume")


def _valid_id(event_id: str) -> bool:
    ms, _, seq = event_id.partition("-")
    return ms.isdigit() and seq.isdigit()


def init_app(app: Flask) -> None:
    app.config.setdefault(
        "SOCK_SERVER_OPTIONS",
        {"ping_interval": app.config.get("WS_PING_INTERVAL", 25), "max_message_size": MAX_MESSAGE_BYTES},
    )
    sock.init_app(app)
