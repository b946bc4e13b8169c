"""One reader per web process follows the organizations' event streams and fans events out to sockets."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask

from webapp import events
from webapp.redis_client import make_redis

log = logging.getLogger(__name__)

# Short enough that a socket of an organization not yet followed waits little for its first event.
BLOCK_MS = 200


@dataclass(eq=False)
class Connection:
    """One WebSocket of one organization, as the relay sees it."""

    org_id: int
    send_raw: Callable[[str], None]
    on_metric_update: Callable[[Connection, dict[str, Any]], dict[str, Any] | None]
    last_sent_id: str = "0-0"
    # Events after this id reached the socket live; a replay must not send them twice.
    live_from: str = "0-0"
    alive: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict[str, Any]) -> bool:
        """Send one message; False once the socket is gone."""
        if not self.alive:
            return False
        try:
            self.send_raw(json.dumps(message, default=str))
        except Exception:
            self.alive = False
        return self.alive

    def deliver(self, event: dict[str, Any]) -> None:
        """Send a stream event once, in stream order, skipping what a resume already replayed."""
        with self.lock:
            if _id_tuple(event["id"]) <= _id_tuple(self.last_sent_id):
                return
            if event["type"] == "metric_update":
                extra = self.on_metric_update(self, event["data"])
                if extra is None:
                    self.last_sent_id = event["id"]
                    return
                event = {**event, "data": {**event["data"], **extra}}
            if self.send(event):
                self.last_sent_id = event["id"]

    def replay(self, client: redis.Redis, last_id: str) -> int:
        """Send the organization's events after `last_id`, in order, skipping any already sent live."""
        sent = 0
        with self.lock:
            cursor = last_id
            while True:
                batch = events.read_since(client, self.org_id, cursor, count=500)
                for event in batch:
                    cursor = event["id"]
                    position = _id_tuple(event["id"])
                    already_live = _id_tuple(self.live_from) < position <= _id_tuple(self.last_sent_id)
                    if not already_live and self.send(event):
                        sent += 1
                if len(batch) < 500:
                    break
            if _id_tuple(cursor) > _id_tuple(self.last_sent_id):
                self.last_sent_id = cursor
        return sent


def _id_tuple(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class Relay:
    """Follows the streams of every organization with a socket in this process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = make_redis(app.config["REDIS_URL"], socket_timeout=BLOCK_MS / 1000 + 5)
        self.connections: dict[int, set[Connection]] = {}
        self.positions: dict[int, str] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def stream_end(self, org_id: int) -> str:
        """The id of the organization's newest event ("0-0" when there is none)."""
        newest = self.client.xrevrange(events.stream_key(org_id), count=1)
        if not newest:
            return "0-0"
        event_id = newest[0][0]
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def register(self, conn: Connection) -> str:
        """Start relaying the organization's events to `conn`; returns the stream position."""
        with self.lock:
            if conn.org_id not in self.positions:
                self.positions[conn.org_id] = self.stream_end(conn.org_id)
            self.connections.setdefault(conn.org_id, set()).add(conn)
            position = self.positions[conn.org_id]
            if conn.last_sent_id == "0-0":
                conn.last_sent_id = position
                conn.live_from = position
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
            with self.lock:
                streams = {events.stream_key(org): pos for org, pos in self.positions.items()}
            if not streams:
                time.sleep(BLOCK_MS / 1000)
                continue
            try:
                batches = self.client.xread(streams, block=BLOCK_MS, count=500)
                backoff = 0.1
            except redis.RedisError as exc:
                log.warning("event relay cannot read streams: %s", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for key, entries in batches or []:
                org_id = int((key.decode() if isinstance(key, bytes) else key).rsplit(":", 1)[1])
                for event_id, fields in entries:
                    event = events.decode(event_id, fields)
                    with self.lock:
                        if org_id in self.positions:
                            self.positions[org_id] = event["id"]
                        targets = list(self.connections.get(org_id, ()))
                    for conn in targets:
                        try:
                            conn.deliver(event)
                        except Exception:
                            log.exception("relay delivery failed org=%s", org_id)


def get_relay(app: Flask) -> Relay:
    """The process's relay, created on first use."""
    relay = app.extensions.get("relay")
    if relay is None:
        with _create_lock:
            relay = app.extensions.get("relay")
            if relay is None:
                relay = app.extensions["relay"] = Relay(app)
    return relay


_create_lock = threading.Lock()
