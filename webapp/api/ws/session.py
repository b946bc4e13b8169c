"""One socket's loop, on its request's thread: client messages, relayed events, periodic updates,
token expiry and logout, each looked at whenever the loop wakes.

The loop sleeps on one event, set both by simple-websocket (a message or the close arrived) and by
the relay (an event was queued), so a socket needs no thread of its own beyond the request's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from simple_websocket import ConnectionClosed, Server

from webapp.api.plumbing.errors import database_unreachable, statement_timed_out
from webapp.api.ws import subscriptions
from webapp.api.ws.admission import Identity
from webapp.api.ws.budget import COSTLY, Limits, MessageBudget, RefusalPace
from webapp.api.ws.messages import (
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    MessageError,
    decode,
    envelope,
    event_id,
    send_error,
)
from webapp.api.ws.resume import resume
from webapp.api.ws.revocations import RevocationWatch, Watched
from webapp.api.ws.subscriptions import Stores, Subscription
from webapp.api.ws.wire import LINGER_SECONDS, SocketWire, text_frame
from webapp.live.connection import Connection, Event
from webapp.live.relay import Relay

log = logging.getLogger(__name__)
# This process's pace of refusals per organization (every socket of the process shares it).
REFUSALS = RefusalPace()

CLIENT_MESSAGES = ("subscribe", "unsubscribe", "ping", "resume")


@dataclass(frozen=True)
class Socket:
    """An accepted socket: simple-websocket's end of it, the wire under it, and the event its loop
    sleeps on (simple-websocket's own, see socket.init_app)."""

    ws: Server
    wire: SocketWire
    wakeup: threading.Event

    def send_text(self, text: str) -> None:
        """Send one text message (its frame made once per text, see wire.text_frame); raises
        ConnectionClosed once the socket is closing, as simple-websocket's own send does."""
        if not self.ws.connected:
            raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
        self.wire.send(text_frame(text))

    def send_now(self, text: str) -> bool:
        """Send one text message if it can go without waiting (see wire.SocketWire.send_now); the rest
        of a frame written in part is left to the socket's loop, woken for it."""
        if not self.ws.connected or not self.wire.send_now(text_frame(text)):
            return False
        if self.wire.backlog:
            self.wakeup.set()
        return True

    def client_messages(self) -> Iterator[str | bytes]:
        """The client's messages that have arrived, without waiting; raises ConnectionClosed once the
        client is gone. (Asking simple-websocket with nothing buffered would wait a full turn of the
        event loop even with timeout=0.)"""
        while self.ws.input_buffer or not self.ws.connected:
            raw = self.ws.receive(timeout=0)
            if raw is None:
                return
            yield raw


@dataclass
class Peer:
    """What answering a client needs: its queue of live events, its subscription, where values come from."""

    conn: Connection
    stores: Stores
    limits: Limits
    sub: Subscription = field(default_factory=Subscription)
    budget: MessageBudget = field(init=False)
    # How long the socket's next read waits after the last refusal's answer.
    hold_next: float = 0.0

    def __post_init__(self) -> None:
        self.budget = MessageBudget(self.limits.burst, self.limits.per_minute)


def run(
    socket: Socket,
    relay: Relay,
    revocations: RevocationWatch,
    identity: Identity,
    stores: Stores,
    *,
    limits: Limits,
    hello: dict[str, Any],
    resume_from: str | None,
) -> None:
    """Serve the socket until it ends, followed by the relay and its token watched meanwhile; a
    failure closes it with 1011."""
    ws = socket.ws
    sub = Subscription()

    def direct(event: Event, text: str) -> bool:
        # An event this socket sends as the relay made it goes out from the relay, without waiting.
        return not subscriptions.needs_values(sub, event) and socket.send_now(text)

    conn = Connection(
        org_id=identity.principal.org_id,
        send_raw=socket.send_text,
        wake=socket.wakeup.set,
        abort=socket.wire.abort,
        direct=direct,
        # Until the loop runs, live events wait in the queue: the greeting and a replay come first.
        busy=True,
    )
    try:
        relay.register(conn)
    except redis.RedisError as exc:
        log.warning("socket refused: cannot follow the events of org=%s: %s", conn.org_id, exc)
        ws.close(reason=TRY_AGAIN_LATER, message="live updates are unavailable; try again later")
        return

    def revoked() -> None:
        # The watch found the token revoked: nothing more goes out (the relay's direct writes, the
        # loop's answers, queue and replay), and the loop closes the socket.
        conn.halt()
        socket.wakeup.set()

    watched = Watched(identity.jti, identity.expires_at, revoked)
    revocations.add(watched)
    try:
        _serve(socket, Peer(conn, stores, limits, sub), identity, watched, hello, resume_from)
    except ConnectionClosed:
        raise  # the client left: flask-sock's business
    except Exception:
        # Escaping, it would reach Flask's 500 handler, whose HTTP response corrupts the upgraded socket.
        log.exception("socket of org=%s failed", conn.org_id)
        conn.guarded(ws.close, INTERNAL_ERROR, "server error; reconnect and resume")
    finally:
        revocations.remove(watched)
        relay.unregister(conn)
        if not ws.connected:
            # The server closes the socket once the view returns: let the lingering close finish first.
            socket.wire.wait_closed(LINGER_SECONDS + 1)


def _serve(
    socket: Socket,
    peer: Peer,
    identity: Identity,
    watched: Watched,
    hello: dict[str, Any],
    resume_from: str | None,
) -> None:
    """Greet, replay from `resume_from` if given, then serve until the socket ends."""
    conn, sub = peer.conn, peer.sub
    greeting = envelope(conn, "connected", hello)
    if resume_from is not None:
        # Until the replay below has come, the client has what it had: resuming from the greeting's
        # id must not skip the events the replay is about to send.
        with contextlib.suppress(MessageError):
            greeting["id"] = event_id(resume_from)
    conn.send(greeting)
    if resume_from is not None:
        # Before any live event, so the missed ones arrive first and in order.
        try:
            resume(conn, peer.stores.client, resume_from, max_seconds=peer.limits.resume_max_seconds)
        except MessageError as exc:
            send_error(conn, str(exc))
    conn.busy = False

    def augment(event: Event) -> Event:
        return subscriptions.with_fresh_values(conn, sub, peer.stores, event)

    while conn.alive:
        ending = _ending(conn, identity, watched)
        if ending is not None:
            # Closing while registered: a close frame stuck behind a full buffer is swept like a send.
            conn.guarded(socket.ws.close, *ending)
            return
        socket.wakeup.wait(_sleep(identity, sub))
        # Whatever set the event (a message, the close, the relay) did its part before: all of it
        # is looked at below, and anything after the clear sets the event again.
        socket.wakeup.clear()
        if conn.halted:
            continue  # closed above, with nothing more sent
        if socket.wire.backlog:
            conn.guarded(socket.wire.drain)  # the rest of a frame the relay wrote in part
        for raw in socket.client_messages():
            if conn.halted:
                break
            handle(peer, raw)
            if peer.hold_next and not conn.halted:
                hold, peer.hold_next = peer.hold_next, 0.0
                time.sleep(hold)  # under gevent, this socket's greenlet alone
        if conn.halted:
            continue  # closed above: no values read for messages that would be refused
        conn.flush(augment)
        subscriptions.send_periodic(conn, sub, peer.stores)


def _sleep(identity: Identity, sub: Subscription) -> float:
    """Seconds until the loop has something to do unless woken: expiry, periodic update."""
    now = time.time()
    timeout = identity.expires_at - now
    if sub.metrics:
        timeout = min(timeout, sub.next_due - now)
    return max(0.0, timeout)


def _ending(conn: Connection, identity: Identity, watched: Watched) -> tuple[int, str] | None:
    """The close code and reason when the socket must end now, else None."""
    if time.time() >= identity.expires_at:
        return POLICY_VIOLATION, "token expired"
    if watched.revoked:
        return POLICY_VIOLATION, "token revoked"
    if conn.dropped:
        return TRY_AGAIN_LATER, "too far behind; reconnect and resume"
    if conn.interrupted:
        return TRY_AGAIN_LATER, "live updates broke off (Redis unavailable); reconnect and fetch afresh"
    return None


def handle(peer: Peer, raw: str | bytes) -> None:
    """Answer one client message; whatever goes wrong, the client gets an error and the socket stays."""
    try:
        dispatch(peer, raw)
    except Exception as exc:
        if database_unreachable(exc) or statement_timed_out(exc):
            # As REST answers 503: the socket stays, and its live updates go on from Redis.
            log.warning(
                "socket message without the database org=%s: %s", peer.conn.org_id, type(exc).__name__
            )
            send_error(
                peer.conn,
                "the database is unavailable or too slow to answer; send the message again shortly "
                "(live updates go on meanwhile)",
            )
            return
        # A bug or a failure no check foresaw: logged with its traceback, answered like any bad message.
        log.exception("socket message failed org=%s", peer.conn.org_id)
        send_error(peer.conn, "the server failed to handle this message (the failure was logged)")


def dispatch(peer: Peer, raw: str | bytes) -> None:
    """Decode one client message and answer it; a bad one gets an error."""
    try:
        _route(peer, decode(raw))
    except MessageError as exc:
        send_error(peer.conn, str(exc))


def _route(peer: Peer, message: dict[str, Any]) -> None:
    conn, kind = peer.conn, message["type"]
    if kind in COSTLY:
        wait = peer.budget.take()
        if wait:
            # Answered at once; the socket's next read waits (its organization's turn, when its sockets
            # are refused faster than the pace allows).
            peer.hold_next = REFUSALS.hold(conn.org_id, peer.limits.refusal_hold_seconds)
            raise MessageError(
                f"too many subscribe and resume messages (at most {peer.limits.per_minute} a minute "
                f"after a burst of {peer.limits.burst}); this one was dropped, send it again in {wait:.1f} s"
            )
    if kind == "ping":
        conn.send(envelope(conn, "pong", {}))
    elif kind == "subscribe":
        subscriptions.subscribe(conn, peer.sub, peer.stores, message)
    elif kind == "unsubscribe":
        subscriptions.unsubscribe(conn, peer.sub, message)
    elif kind == "resume":
        resume(
            conn, peer.stores.client, message.get("last_event_id"), max_seconds=peer.limits.resume_max_seconds
        )
    else:
        raise MessageError(f"unknown message type {kind!r}; allowed: {', '.join(CLIENT_MESSAGES)}")
