"""One reader per web process follows the organizations' event streams and hands events to sockets.

The reader thread never writes to a socket: it appends each event to the socket's bounded queue and
wakes the socket's own thread, which sends. A slow or stuck client therefore delays nobody else; one
that falls too far behind, or whose send is stuck, is dropped and can reconnect and resume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask

from webapp.infra.redis_client import make_redis
from webapp.live import events

log = logging.getLogger(__name__)

# Short enough that a socket of an organization not yet followed waits little for its first event.
BLOCK_MS = 200
# Events waiting for one socket; a client further behind than this is dropped (it can resume).
QUEUE_LIMIT = 1000
# A send blocked this long (the client stopped reading) drops the socket.
SEND_TIMEOUT_SECONDS = 10.0
REPLAY_BATCH = 500
# A Redis stream id is two unsigned 64-bit integers, "<ms>-<seq>"; Redis refuses anything larger.
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64_MAX = 2**64 - 1

Event = dict[str, Any]


@dataclass(eq=False)
class Connection:
    """One WebSocket of one organization: a queue filled by the relay, sent from by the socket's thread.

    `send`, `guarded`, `flush` and `replay` belong to the socket's thread, which alone writes to
    the socket; `offer` and `abort` to the relay.
    """

    org_id: int
    send_raw: Callable[[str], None]
    wake: Callable[[], None]
    # Unblocks a send stuck on a client that stopped reading (shuts the TCP connection down).
    abort: Callable[[], None]
    # The newest stream id sent; every event in (sent_from, last_sent_id] has been sent.
    last_sent_id: str = "0-0"
    sent_from: str = "0-0"
    alive: bool = True
    # Set by the relay when the queue overflowed: the socket's thread closes the socket.
    dropped: bool = False
    # The relay lost Redis while following this socket: events of that time may never have been written.
    interrupted: bool = False
    sending_since: float | None = None
    pending: deque[tuple[Event, str]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, event: Event, text: str) -> None:
        """Queue a live event (and its JSON, made once for every socket) for the socket's thread."""
        with self.lock:
            if not self.alive or self.dropped:
                return
            if len(self.pending) >= QUEUE_LIMIT:
                self.dropped = True
                self.pending.clear()
            else:
                self.pending.append((event, text))
        if self.dropped and self.sending_since is not None:
            self.abort()
        self.wake()

    def send(self, message: dict[str, Any], text: str | None = None) -> bool:
        """Send one message (`text`: its JSON, when already made); False once the socket is gone."""
        if not self.alive:
            return False
        return self.guarded(self.send_raw, text if text is not None else json.dumps(message, default=str))

    def guarded(self, write: Callable[..., Any], *args: Any) -> bool:
        """Run a write to the socket where the relay's sweep can abort it if it gets stuck."""
        self.sending_since = time.monotonic()
        try:
            write(*args)
        except Exception:
            self.alive = False
        finally:
            self.sending_since = None
        return self.alive

    def flush(self, augment: Callable[[Event], Event]) -> int:
        """Send the queued live events not sent yet, in stream order; `augment` may add to each."""
        with self.lock:
            batch = list(self.pending)
            self.pending.clear()
        sent = 0
        for event, text in batch:
            if _id_tuple(event["id"]) <= _id_tuple(self.last_sent_id):
                continue  # a replay sent it already
            message = augment(event)
            if not self.send(message, text if message is event else None):
                break
            self.last_sent_id = event["id"]
            sent += 1
        return sent

    def replay(self, client: redis.Redis, last_id: str) -> int:
        """Send the organization's events after `last_id` in stream order, skipping those already sent."""
        sent = 0
        cursor = last_id
        # The newest event read: a live event up to it need not be sent again. Not `last_id` itself,
        # which may lie past the stream's end (the live events after the end would then be skipped).
        newest = self.last_sent_id
        low, high = _id_tuple(self.sent_from), _id_tuple(self.last_sent_id)
        # Nothing follows the largest id, and Redis refuses a range that starts after it.
        while self.alive and _id_tuple(cursor) != (_U64_MAX, _U64_MAX):
            batch = events.read_since(client, self.org_id, cursor, count=REPLAY_BATCH)
            for event in batch:
                cursor = event["id"]
                if low < _id_tuple(cursor) <= high:
                    continue
                if not self.send(event):
                    return sent
                sent += 1
            if batch and _id_tuple(cursor) > _id_tuple(newest):
                newest = cursor
            if len(batch) < REPLAY_BATCH:
                break
        self.last_sent_id = newest
        if _id_tuple(last_id) < low:
            self.sent_from = last_id
        return sent


def valid_id(event_id: str) -> bool:
    """Whether `event_id` is a stream id Redis accepts: "<ms>-<seq>", each below 2**64 (ASCII digits)."""
    match = _ID.fullmatch(event_id)
    return match is not None and all(int(part) <= _U64_MAX for part in match.groups())


def _id_tuple(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Relay:
    """Follows the streams of every organization with a socket in this process, with one thread."""

    def __init__(self, app: Flask) -> None:
        self.pid = os.getpid()
        self.client = make_redis(app.config["REDIS_URL"], socket_timeout=BLOCK_MS / 1000 + 5)
        self.connections: dict[int, set[Connection]] = {}
        self.positions: dict[int, str] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def stream_end(self, org_id: int) -> str:
        """The id of the organization's newest event ("0-0" when there is none)."""
        newest = self.client.xrevrange(events.stream_key(org_id), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def register(self, conn: Connection) -> str:
        """Start relaying the organization's events to `conn`; raises RedisError when Redis is down."""
        end = self.stream_end(conn.org_id)  # outside the lock: Redis may be slow
        with self.lock:
            position = self.positions.setdefault(conn.org_id, end)
            self.connections.setdefault(conn.org_id, set()).add(conn)
            conn.last_sent_id = conn.sent_from = position
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
                self.thread.start()
        return position

    def unregister(self, conn: Connection) -> None:
        with self.lock:
            group = self.connections.get(conn.org_id)
            if group is not None:
                group.discard(conn)
                if not group:
                    del self.connections[conn.org_id]
                    self.positions.pop(conn.org_id, None)

    def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                self._sweep()
                self._read_once()
                backoff = 0.1
            except Exception as exc:
                # Redis down, or anything unexpected: keep the thread; positions resume where they were.
                if isinstance(exc, redis.RedisError):
                    log.warning("event relay cannot read streams: %s", exc)
                    self._interrupt()
                else:
                    log.exception("event relay failed; retrying")
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _interrupt(self) -> None:
        """Tell every socket its stream broke off: writes meanwhile publish nothing (Redis is down), so
        a silent socket would miss them; closed with 1013, its client reconnects and reads afresh."""
        with self.lock:
            targets = [conn for group in self.connections.values() for conn in group]
        for conn in targets:
            conn.interrupted = True
            conn.wake()

    def _read_once(self) -> None:
        with self.lock:
            streams = {events.stream_key(org): pos for org, pos in self.positions.items()}
        if not streams:
            time.sleep(BLOCK_MS / 1000)
            return
        for key, entries in self.client.xread(streams, block=BLOCK_MS, count=REPLAY_BATCH) or []:
            org_id = int(_text(key).rsplit(":", 1)[1])
            for event_id, fields in entries:
                try:
                    event = events.decode(event_id, fields)
                except (KeyError, ValueError):
                    log.exception("skipping malformed event %s of org=%s", _text(event_id), org_id)
                    event = None
                with self.lock:
                    current = self.positions.get(org_id)
                    # Only forward: the org may have been dropped and followed again meanwhile.
                    if current is not None and _id_tuple(_text(event_id)) > _id_tuple(current):
                        self.positions[org_id] = _text(event_id)
                    targets = list(self.connections.get(org_id, ()))
                if event is not None and targets:
                    text = json.dumps(event, default=str)
                    for conn in targets:
                        conn.offer(event, text)

    def _sweep(self) -> None:
        """Drop sockets whose send has been stuck too long (their own thread cannot notice)."""
        limit = time.monotonic() - SEND_TIMEOUT_SECONDS
        with self.lock:
            stuck = [
                c
                for group in self.connections.values()
                for c in group
                if c.sending_since is not None and c.sending_since < limit
            ]
        for conn in stuck:
            log.warning("dropping a socket of org=%s: its send is stuck", conn.org_id)
            conn.dropped = True
            conn.abort()


def get_relay(app: Flask) -> Relay:
    """The process's relay, created on first use (and again in a forked child)."""
    relay = app.extensions.get("relay")
    if relay is None or relay.pid != os.getpid():
        with _create_lock:
            relay = app.extensions.get("relay")
            if relay is None or relay.pid != os.getpid():
                relay = app.extensions["relay"] = Relay(app)
    return relay


_create_lock = threading.Lock()
