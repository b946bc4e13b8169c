"""One reader per web process follows the organizations' event streams and hands events to sockets.

The reader thread never writes to a socket: it offers each event to the socket's Connection, whose
own loop sends (webapp.live.connection). The web layer creates one Relay per process and gives it
a Redis client of its own.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import redis

from webapp.live import events
from webapp.live.connection import REPLAY_BATCH, Connection, id_order, pause

log = logging.getLogger(__name__)

# Short enough that a socket of an organization not yet followed waits little for its first event.
BLOCK_MS = 200
# A send blocked this long (the client stopped reading) drops the socket.
SEND_TIMEOUT_SECONDS = 10.0
# Sockets offered an event between two yields to the rest of the process.
FAIR_SHARE = 500


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Relay:
    """Follows the streams of every organization with a socket in this process, with one thread."""

    def __init__(self, client: redis.Redis) -> None:
        """`client`: a Redis client of the relay's own, whose socket timeout exceeds BLOCK_MS."""
        self.pid = os.getpid()
        self.client = client
        self.connections: dict[int, set[Connection]] = {}
        self.positions: dict[int, str] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def stream_end(self, org_id: int) -> str:
        """The id of the organization's newest event ("0-0" when there is none)."""
        newest = self.client.xrevrange(events.stream_key(org_id), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def register(self, conn: Connection) -> str:
        """Start relaying the organization's events to `conn`; raises RedisError when Redis is down.

        An organization already followed is joined where the relay stands, with no round trip; the
        first socket of an organization asks Redis for the stream's end.
        """
        with self.lock:
            position = self.positions.get(conn.org_id)
        end = position if position is not None else self.stream_end(conn.org_id)  # Redis: outside the lock
        with self.lock:
            position = self.positions.setdefault(conn.org_id, end)
            self.connections.setdefault(conn.org_id, set()).add(conn)
            conn.last_sent_id = conn.sent_from = position
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
                self.thread.start()
        return position

    def unregister(self, conn: Connection) -> None:
        """Stop relaying to `conn`; an organization left without sockets is no longer followed."""
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
                    if current is not None and id_order(_text(event_id)) > id_order(current):
                        self.positions[org_id] = _text(event_id)
                    targets = list(self.connections.get(org_id, ()))
                if event is not None and targets:
                    text = json.dumps(event, default=str)
                    for n, conn in enumerate(targets, 1):
                        conn.offer(event, text)
                        if n % FAIR_SHARE == 0:
                            pause()  # thousands of sockets: let requests in between

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
