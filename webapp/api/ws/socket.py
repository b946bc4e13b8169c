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
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_jwt_extended import decode_token
from flask_sock import Sock
from pydantic import BaseModel
from simple_websocket import ConnectionClosed

from webapp.analytics import cache
from webapp.analytics.metrics import METRICS
from webapp.api.plumbing.errors import ApiError, error_response
from webapp.api.plumbing.spec import check_json_text, document
from webapp.core import strict_json
from webapp.core.filters import FilterError, parse_filters
from webapp.core.timeutil import utcnow
from webapp.infra.db import close_quietly, session_factory
from webapp.infra.redis_client import get_redis
from webapp.live.relay import Connection, get_relay, valid_id
from webapp.live.subscriptions import current_values
from webapp.security.admission import Principal, current_claims, current_principal, require_role
from webapp.security.tokens import REQUIRED_CLAIMS, ROLE_RANK, token_revoked

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__, url_prefix="/ws")
sock = Sock()

TICKET_SECONDS = 30
MIN_INTERVAL = 5
MAX_INTERVAL = 3600
MAX_MESSAGE_BYTES = 64 * 1024
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
# How often an open socket asks whether its token was revoked (a logout ends the user's sockets).
# One Redis GET per socket each time: the blocklist keeps the answer there.
REVOCATION_CHECK_SECONDS = 5.0
# After its close frame the server reads and discards what the client still sends, this long and
# this much at most: closing with unread bytes (the rest of a too-big message) resets the connection
# and the client loses the close frame.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
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
    claims = current_claims()
    # The token's jti too: a ticket redeemed after that token's logout is refused like the token.
    payload = {
        "user_id": principal.user_id,
        "org_id": principal.org_id,
        "role": principal.role,
        "exp": claims["exp"],
        "jti": claims["jti"],
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
    # The token's id: the socket closes once a logout revokes it.
    jti: str
    next_revocation_check: float = 0.0

    def revoked(self) -> bool:
        """Whether the token was revoked (asks the blocklist; raises when Redis and the database are down)."""
        return token_revoked({"jti": self.jti, "exp": self.expires_at})


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
    principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
    return Identity(principal, float(claims["exp"]), claims["jti"])


def _from_ticket(ticket: str) -> Identity | None:
    try:
        raw = get_redis().getdel(_ticket_key(ticket))
    except redis.RedisError:
        return None
    if raw is None:
        return None
    data = json.loads(raw)
    # A ticket without a jti (issued before tickets kept it) counts as revoked, as a token would.
    if token_revoked({"jti": data.get("jti"), "exp": data["exp"]}):
        return None
    return Identity(Principal(data["user_id"], data["org_id"], data["role"]), float(data["exp"]), data["jti"])


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
    refused = _slots.take(
        identity.principal.org_id,
        current_app.config.get("WS_MAX_SOCKETS_PER_PROCESS", 48),
        current_app.config.get("WS_MAX_SOCKETS_PER_ORG", 32),
    )
    if refused is not None:
        return error_response(*refused, headers={"Retry-After": "10"})
    g.ws_slot = identity.principal.org_id
    g.ws_identity = identity
    return None


class _Slots:
    """Open sockets of this process, in all and per organization: each holds one of its threads, so
    past a cap a new one is refused before the upgrade, and REST keeps threads to answer with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._per_org: dict[int, int] = {}

    def take(self, org_id: int, max_total: int, max_org: int) -> tuple[int, str] | None:
        """None when a slot was taken; else the status and message that refuse the socket."""
        with self._lock:
            if self._per_org.get(org_id, 0) >= max_org:
                return 429, f"the organization has {max_org} sockets open on this server; close one first"
            if self._total >= max_total:
                return 503, "this server holds as many sockets as it can; try again shortly"
            self._total += 1
            self._per_org[org_id] = self._per_org.get(org_id, 0) + 1
        return None

    def give_back(self, org_id: int) -> None:
        with self._lock:
            self._total -= 1
            left = self._per_org.get(org_id, 1) - 1
            if left:
                self._per_org[org_id] = left
            else:
                self._per_org.pop(org_id, None)


_slots = _Slots()


@bp.teardown_request
def release_socket_slot(exc: BaseException | None = None) -> None:
    """The socket's slot goes back when its request ends (the socket closed, or never opened)."""
    org_id = g.pop("ws_slot", None)
    if org_id is not None:
        _slots.give_back(org_id)


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
            close_quietly(session)


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
    """The socket's own loop: client messages, relayed events, periodic updates, token expiry, logout."""
    identity: Identity = g.ws_identity
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if identity.principal.org_id != org_id:
        ws.close(reason=POLICY_VIOLATION, message="organization does not match the token")
        return
    ws.sock = _OneWriter(ws.sock)
    # simple-websocket sets `ws.event` when a message or the close arrives; the relay sets it too,
    # so this thread sleeps on one event for both.
    conn = Connection(org_id=org_id, send_raw=ws.send, wake=ws.event.set, abort=lambda: _abort(ws))
    relay = get_relay(app)
    try:
        relay.register(conn)
    except redis.RedisError:
        log.warning("socket refused: cannot follow the events of org=%s", org_id)
        ws.close(reason=TRY_AGAIN_LATER, message="live updates are unavailable; try again later")
        return
    try:
        _serve(ws, conn, identity, app)
    except ConnectionClosed:
        raise  # the client left: flask-sock's business
    except Exception:
        # Escaping, it would reach Flask's 500 handler, whose HTTP response corrupts the upgraded socket.
        log.exception("socket of org=%s failed", org_id)
        conn.guarded(ws.close, INTERNAL_ERROR, "server error; reconnect and resume")
    finally:
        relay.unregister(conn)
        if not ws.connected:
            # gunicorn closes the socket once this returns: let simple-websocket's thread finish its
            # lingering close first (see _OneWriter.close).
            ws.thread.join(LINGER_SECONDS + 1)


def _serve(ws: Any, conn: Connection, identity: Identity, app: Flask) -> None:
    """Greet, replay from `?last_event_id=` if given, then serve until the socket ends."""
    sub = Subscription()
    client = get_redis()
    hello = {
        "user_id": identity.principal.user_id,
        "role": identity.principal.role,
        "server_pid": os.getpid(),
        "ping_interval": app.config["SOCK_SERVER_OPTIONS"].get("ping_interval"),
    }
    conn.send(_envelope(conn, "connected", hello))
    resume_from = request.args.get("last_event_id")
    if resume_from is not None:
        # Before any live event, so the missed ones arrive first and in order.
        _resume(conn, client, resume_from)
    identity.next_revocation_check = time.time() + REVOCATION_CHECK_SECONDS

    def augment(event: dict[str, Any]) -> dict[str, Any]:
        extra = _fresh(app, conn.org_id, sub, event["data"]) if event["type"] == "metric_update" else {}
        # Unchanged, the event goes out as the JSON the relay made once for every socket.
        return {**event, "data": {**event["data"], **extra}} if extra else event

    while conn.alive:
        ending = _ending(conn, identity)
        if ending is not None:
            # Closing while registered: a close frame stuck behind a full buffer is swept like a send.
            conn.guarded(ws.close, *ending)
            return
        now = time.time()
        timeout = min(identity.expires_at, identity.next_revocation_check) - now
        if sub.metrics:
            timeout = min(timeout, sub.next_due - now)
        ws.event.wait(max(0.0, timeout))
        raw = ws.receive(timeout=0)  # raises ConnectionClosed once the client is gone
        if raw is not None:
            _handle(conn, sub, raw, app, client)
        conn.flush(augment)
        if sub.metrics and time.time() >= sub.next_due:
            sub.next_due = time.time() + sub.interval
            _send_periodic(conn, sub, app)


def _ending(conn: Connection, identity: Identity) -> tuple[int, str] | None:
    """The close code and reason when the socket must end now, else None."""
    now = time.time()
    if now >= identity.expires_at:
        return POLICY_VIOLATION, "token expired"
    if conn.dropped:
        return TRY_AGAIN_LATER, "too far behind; reconnect and resume"
    if conn.interrupted:
        return TRY_AGAIN_LATER, "live updates broke off (Redis unavailable); reconnect and fetch afresh"
    if now >= identity.next_revocation_check:
        identity.next_revocation_check = now + REVOCATION_CHECK_SECONDS
        try:
            if identity.revoked():
                return POLICY_VIOLATION, "token revoked"
        except Exception:
            # Redis and the database both unreachable: keep the socket (its token still expires) and
            # ask again at the next check rather than drop every socket in an outage.
            log.warning("cannot check token revocation for a socket of org=%s", conn.org_id, exc_info=True)
    return None


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
    """The socket with one write at a time, and a lingering close.

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

    def close(self) -> None:
        """Close after the peer has read our close frame: FIN, then discard what it still sends.

        simple-websocket closes from its own thread, e.g. right after answering a too-big message with
        1009 while the rest of that message is still arriving; a plain close with those bytes unread
        makes the kernel send a reset, and the client never sees the 1009.
        """
        try:
            self._sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass  # already closed or reset: nothing left to protect
        finally:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _abort(ws: Any) -> None:
    """Shut the TCP connection down, which unblocks a send stuck on a client that stopped reading."""
    with contextlib.suppress(OSError):
        ws.sock.shutdown(socket.SHUT_RDWR)


def _send_values(conn: Connection, sub: Subscription, app: Flask, kind: str) -> None:
    data = _values(app, conn.org_id, sorted(sub.metrics), sub.filters)
    conn.send(_envelope(conn, kind, {**data, "interval": sub.interval, "filters": sub.filters}))


def _send_periodic(conn: Connection, sub: Subscription, app: Flask) -> None:
    """A periodic update; when it fails the client is told, and the next one is tried as planned."""
    try:
        _send_values(conn, sub, app, "periodic_update")
    except Exception:
        log.exception("periodic update failed org=%s", conn.org_id)
        _error(conn, f"the periodic update failed; the next one is due in {sub.interval:g} s")


def _error(conn: Connection, message: str) -> None:
    conn.send(_envelope(conn, "error", {"message": message}))


def _handle(conn: Connection, sub: Subscription, raw: str | bytes, app: Flask, client: redis.Redis) -> None:
    """Answer one client message; whatever goes wrong, the client gets an error and the socket stays."""
    try:
        _dispatch(conn, sub, raw, app, client)
    except Exception:
        # A bug or a failure no check foresaw: logged with its traceback, answered like any bad message.
        log.exception("socket message failed org=%s", conn.org_id)
        _error(conn, "the server failed to handle this message (the failure was logged)")


def _dispatch(conn: Connection, sub: Subscription, raw: str | bytes, app: Flask, client: redis.Redis) -> None:
    try:
        # The platform's strict decoder: deep nesting is a JsonError, not a RecursionError.
        message = strict_json.loads(raw)
    except strict_json.JsonError as exc:
        _error(conn, f"messages must be JSON objects: {exc}")
        return
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        _error(conn, "messages must be JSON objects with a type")
        return
    try:
        # As in request bodies: text PostgreSQL cannot store would fail deep inside a query.
        check_json_text(message, "the message")
    except ApiError as exc:
        _error(conn, exc.message)
        return
    kind = message["type"]
    if kind == "ping":
        conn.send(_envelope(conn, "pong", {}))
    elif kind == "subscribe":
        _subscribe(conn, sub, message, app)
    elif kind == "unsubscribe":
        metrics = message.get("metrics")
        if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
            _error(conn, "unsubscribe needs a list of metric names")
            return
        sub.metrics -= set(metrics)
        conn.send(_envelope(conn, "unsubscribed", {"metrics": sorted(sub.metrics)}))
    elif kind == "resume":
        _resume(conn, client, message.get("last_event_id"))
    else:
        _error(conn, f"unknown message type {kind!r}; allowed: subscribe, unsubscribe, ping, resume")


def _subscribe(conn: Connection, sub: Subscription, message: dict[str, Any], app: Flask) -> None:
    """Add to the subscription and send its values; one that fails leaves the subscription as it was."""
    try:
        metrics, filters, interval = _parse_subscribe(message)
    except ValueError as exc:
        _error(conn, str(exc))
        return
    wanted = replace(
        sub,
        metrics=sub.metrics | metrics,
        filters=filters if "filters" in message else sub.filters,
        interval=interval,
    )
    _send_values(conn, wanted, app, "subscription_data")
    sub.metrics, sub.filters, sub.interval = wanted.metrics, wanted.filters, wanted.interval
    sub.next_due = time.time() + interval


def _resume(conn: Connection, client: redis.Redis, last_id: Any) -> None:
    """Send the events after `last_id`, or an error saying why not."""
    if not isinstance(last_id, str) or not valid_id(last_id):
        _error(
            conn,
            "resume needs last_event_id, the id of the last message received: "
            '"<ms>-<seq>", two integers below 2**64',
        )
        return
    try:
        conn.replay(client, last_id)
    except (redis.ConnectionError, redis.TimeoutError):
        _error(conn, "resume is unavailable while Redis is down; try again")


def init_app(app: Flask) -> None:
    app.config.setdefault(
        "SOCK_SERVER_OPTIONS",
        {"ping_interval": app.config.get("WS_PING_INTERVAL", 25), "max_message_size": MAX_MESSAGE_BYTES},
    )
    sock.init_app(app)
