"""Live analytics over WebSocket: the routes, the admission before the upgrade, one relay per process.

The socket's loop is in session; the protocol's messages in messages; the socket under it in wire.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from collections.abc import Mapping

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_sock import Sock
from pydantic import BaseModel
from simple_websocket import Server

from webapp.analytics import read_time
from webapp.api.plumbing.errors import ApiError, asks_upgrade
from webapp.api.plumbing.spec import document
from webapp.api.ws import admission, session, wire
from webapp.api.ws.admission import TICKET_SECONDS, Identity
from webapp.api.ws.budget import Limits
from webapp.api.ws.messages import MAX_MESSAGE_BYTES, POLICY_VIOLATION
from webapp.api.ws.revocations import RevocationWatch
from webapp.api.ws.slots import SLOTS
from webapp.api.ws.subscriptions import Stores
from webapp.infra.db import session_factory
from webapp.infra.redis_client import get_redis, make_redis
from webapp.live import relay as live_relay
from webapp.live.relay import Relay
from webapp.security.admission import current_claims, current_principal, require_role
from webapp.security.tokens import negative_ttl

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__, url_prefix="/ws")
# The one version of RFC 6455 (Sec-WebSocket-Version).
WEBSOCKET_VERSION = "13"
# The headers the socket library parses as it accepts the socket (RFC 6455 allows only ASCII there).
HANDSHAKE_HEADERS = (
    "Connection",
    "Upgrade",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)
sock = Sock()


class WsTicket(BaseModel):
    """A one-time ticket, how long it lasts, and the socket URL that redeems it."""

    ticket: str
    expires_in: int
    url: str


@bp.post("/ticket")
@document(
    "A one-time ticket (valid 30 s) to open the WebSocket without a header",
    tag="live",
    responses={200: WsTicket},
    errors=(401, 503),
)
@require_role("viewer")
def issue_ticket() -> Response:
    """A one-time ticket standing for the caller's token, and the socket URL that redeems it."""
    principal = current_principal()
    try:
        ticket = admission.issue_ticket(get_redis(), principal, current_claims())
    except redis.RedisError as exc:
        raise ApiError(
            503, "tickets are unavailable while Redis is down; use the Authorization header"
        ) from exc
    url = f"/api/v1/ws/analytics/{principal.org_id}?ticket={ticket}"
    return jsonify({"ticket": ticket, "expires_in": TICKET_SECONDS, "url": url})


@bp.before_request
def admit_socket() -> None:
    """Refuse the upgrade (401/403, or 429/503 past the socket caps) before the socket is accepted."""
    if request.endpoint != "api.ws.analytics_socket":
        return
    config = current_app.config
    # Before the token or ticket is read: a refused handshake does not use up a one-time ticket.
    check_handshake(request.headers)
    identity = admission.identify(
        get_redis(),
        request.headers,
        request.args,
        host=request.host,
        allowed_origins=config["WS_ALLOWED_ORIGINS"],
    )
    org_id = identity.principal.org_id
    refused = SLOTS.take(
        get_redis(), org_id, config["WS_MAX_SOCKETS_PER_PROCESS"], config["WS_MAX_SOCKETS_PER_ORG"]
    )
    if refused is not None:
        raise ApiError(*refused, headers={"Retry-After": "10"})
    g.ws_slot, g.ws_identity = org_id, identity
    # No per-message compression: it would give each socket a zlib context (hundreds of KiB) and a
    # compression per message, for events of a few hundred bytes. simple-websocket accepts the
    # extension whenever the client offers it, and it reads the offer from here.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    g.ws_wire, g.ws_wakeup = wire.adopt(request.environ), threading.Event()


def check_handshake(headers: Mapping[str, str]) -> None:
    """Refuse an upgrade request RFC 6455 does not allow, before the socket library reads it: 426 for
    a protocol version other than 13 (naming 13), 400 for a missing or malformed key or no Connection:
    Upgrade. (A request without Upgrade: websocket matches no socket route: routing answers it 400.)"""
    for name in HANDSHAKE_HEADERS:
        if not headers.get(name, "").isascii():
            raise ApiError(400, f"{name} must be ASCII", details={"field": name})
    if not asks_upgrade(headers):
        raise ApiError(400, "a WebSocket upgrade needs the header Connection: Upgrade")
    if headers.get("Sec-WebSocket-Version", "").strip() != WEBSOCKET_VERSION:
        raise ApiError(
            426,
            f"only version {WEBSOCKET_VERSION} of the WebSocket protocol is spoken here",
            details={"field": "Sec-WebSocket-Version"},
            headers={"Sec-WebSocket-Version": WEBSOCKET_VERSION},
        )
    try:
        key = base64.b64decode(headers.get("Sec-WebSocket-Key", "").strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        raise ApiError(
            400,
            "Sec-WebSocket-Key must be 16 random bytes in base64",
            details={"field": "Sec-WebSocket-Key"},
        )


@bp.teardown_request
def release_socket_slot(exc: BaseException | None = None) -> None:
    """The socket's slot goes back when its request ends (the socket closed, or never opened)."""
    org_id = g.pop("ws_slot", None)
    if org_id is not None:
        SLOTS.give_back(get_redis(), org_id)


@sock.route("/analytics/<int:org_id>", bp=bp)
@document(
    "WebSocket (upgrade): job_update and metric_update of the organization, subscriptions, resume",
    tag="live",
    responses={101: None},
    parameters=(
        {
            "name": "ticket",
            "in": "query",
            "required": False,
            "description": "a one-time ticket from POST /api/v1/ws/ticket (valid 30 s), instead of an "
            "Authorization header",
            "schema": {"type": "string"},
        },
        {
            "name": "token",
            "in": "query",
            "required": False,
            "description": "an access token, for older clients (never logged); prefer the header or a ticket",
            "schema": {"type": "string"},
        },
        {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "description": "resume: the events after this id are sent first, in order",
            "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
        },
    ),
    description=(
        "Authenticate with an `Authorization: Bearer` header, `?ticket=` or `?token=`; a token of "
        "another organization closes the socket with 1008.\n\n"
        "Client messages (JSON): `{type: subscribe, metrics, interval (5-3600 s), filters?, clock?, "
        "schedule_id?}`, `{type: unsubscribe, metrics}`, `{type: ping}`, `{type: resume, last_event_id}`.\n\n"
        "Server messages, each `{type, organization_id, timestamp, data, id}`: `connected`, "
        "`subscription_data`, `periodic_update`, `metric_update`, `job_update`, `sla_breach`, "
        "`alert`, `unsubscribed`, `pong`, `error`."
    ),
    errors=(400, 401, 403, 404, 426, 429, 503),
    role="viewer",
)
def analytics_socket(ws: Server, org_id: int) -> None:
    """The socket of an organization the token is for, served until it ends (see session)."""
    identity: Identity = g.ws_identity
    if identity.principal.org_id != org_id:
        ws.close(reason=POLICY_VIOLATION, message="organization does not match the token")
        return
    hello = {
        "user_id": identity.principal.user_id,
        "role": identity.principal.role,
        "server_pid": os.getpid(),
        "ping_interval": current_app.config["SOCK_SERVER_OPTIONS"]["ping_interval"],
    }
    session.run(
        session.Socket(ws, g.ws_wire, g.ws_wakeup),
        relay_for(current_app),
        revocations_for(current_app),
        identity,
        Stores(
            get_redis(),
            session_factory(),
            read_time.sockets(current_app.config["WS_READ_SECONDS_PER_MINUTE"]),
        ),
        limits=Limits(
            current_app.config["WS_COSTLY_MESSAGES_BURST"],
            current_app.config["WS_COSTLY_MESSAGES_PER_MINUTE"],
            current_app.config["WS_RESUME_MAX_SECONDS"],
            current_app.config["REFUSAL_PACE_MS"] / 1000,
        ),
        hello=hello,
        resume_from=request.args.get("last_event_id"),
    )


_relay_lock = threading.Lock()


def relay_for(app: Flask) -> Relay:
    """The process's relay, created on first use (and again in a forked child), with its own client."""
    relay = app.extensions.get("relay")
    if relay is None or relay.pid != os.getpid():
        with _relay_lock:
            relay = app.extensions.get("relay")
            if relay is None or relay.pid != os.getpid():
                # A client of its own: its blocking reads outlast the shared client's socket timeout.
                timeout = live_relay.BLOCK_MS / 1000 + 5
                client = make_redis(app.config["REDIS_URL"], socket_timeout=timeout)
                relay = app.extensions["relay"] = Relay(client)
    return relay


def revocations_for(app: Flask) -> RevocationWatch:
    """The process's watch over its sockets' tokens, created on first use (and again in a forked child)."""
    watch = app.extensions.get("ws_revocations")
    if watch is None or watch.pid != os.getpid():
        with _relay_lock:
            watch = app.extensions.get("ws_revocations")
            if watch is None or watch.pid != os.getpid():
                # The announcements' subscription holds a connection: one of its own, not the pool's.
                listen = make_redis(app.config["REDIS_URL"], socket_timeout=live_relay.BLOCK_MS / 1000 + 5)
                watch = RevocationWatch(get_redis(), session_factory(), negative_ttl(), listen_client=listen)
                app.extensions["ws_revocations"] = watch
    return watch


def _request_wakeup() -> threading.Event:
    """simple-websocket's `event_class`: the event this request's socket loop sleeps on (made by
    admit_socket), so that the relay wakes the loop through the event simple-websocket sets too."""
    return g.ws_wakeup


def init_app(app: Flask) -> None:
    """Socket options for simple-websocket (pings, message cap, the loop's event) and the routes.

    flask-sock hands SOCK_SERVER_OPTIONS to every simple-websocket Server it accepts; the socket loop
    depends on its event_class, so the options are set here, not taken from elsewhere.
    """
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["WS_PING_INTERVAL"],
        "max_message_size": MAX_MESSAGE_BYTES,
        "event_class": _request_wakeup,
    }
    sock.init_app(app)
