"""One socket's side of the relay: a bounded queue of live events, sent in stream order, and replay.

The relay's reader thread never waits on a socket. An event for a socket that is idle (nothing
queued, nothing being sent) and wants it as it is goes out at once through `direct`, a write that
never waits; otherwise the event is appended to the socket's queue and whoever serves the socket is
woken, and sends. A slow or stuck client therefore delays nobody else; one that falls too far
behind, or whose send is stuck, is dropped and can reconnect and resume.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from webapp.live import events

# Events waiting for one socket; a client further behind than this is dropped (it can resume).
QUEUE_LIMIT = 1000
REPLAY_BATCH = 500
# A Redis stream id is two unsigned 64-bit integers, "<ms>-<seq>"; Redis refuses anything larger.
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64_MAX = 2**64 - 1

Event = dict[str, Any]


@dataclass(eq=False)
class Connection:
    """One WebSocket of one organization: a queue filled by the relay, sent from by the socket's loop.

    `send`, `guarded`, `flush` and `replay` belong to the socket's loop, which alone writes to the
    socket; `offer` and `abort` to the relay.
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
    # Writes an event (its JSON) to the socket without waiting, if the socket wants it unchanged;
    # False when it did not. None: every event goes through the queue.
    direct: Callable[[Event, str], bool] | None = None
    # The socket's loop is sending a batch (flush, replay): live events wait in the queue behind it.
    busy: bool = False
    # The socket must get nothing more (its token was revoked): every send is refused, whoever makes
    # it, and its loop closes it (with the close frame, which `guarded` still writes).
    halted: bool = False
    pending: deque[tuple[Event, str]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, event: Event, text: str) -> None:
        """Send a live event (and its JSON, made once for every socket) at once if the socket is idle,
        else queue it for the socket's thread."""
        with self.lock:
            if not self.alive or self.dropped or self.halted:
                return
            if (
                self.direct is not None
                and not self.pending
                and not self.busy
                and self.sending_since is None
                and id_order(event["id"]) > id_order(self.last_sent_id)
                and self.direct(event, text)
            ):
                self.last_sent_id = event["id"]
                return
            if len(self.pending) >= QUEUE_LIMIT:
                self.dropped = True
                self.pending.clear()
            else:
                self.pending.append((event, text))
        if self.dropped and self.sending_since is not None:
            self.abort()
        self.wake()

    def halt(self) -> None:
        """Send nothing more (drop what is queued); the socket's loop closes the socket."""
        with self.lock:
            self.halted = True
            self.pending.clear()

    def send(self, message: dict[str, Any], text: str | None = None) -> bool:
        """Send one message (`text`: its JSON, when already made); False once the socket is gone or
        halted."""
        if not self.alive or self.halted:
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
            if not self.pending:
                return 0
            batch = list(self.pending)
            self.pending.clear()
            self.busy = True
        sent = 0
        try:
            for event, text in batch:
                if id_order(event["id"]) <= id_order(self.last_sent_id):
                    continue  # a replay sent it already
                if sent:
                    pause()
                message = augment(event)
                if not self.send(message, text if message is event else None):
                    break
                self.last_sent_id = event["id"]
                sent += 1
        finally:
            self.busy = False
        return sent

    def replay(self, client: redis.Redis, last_id: str) -> int:
        """Send the organization's events after `last_id` in stream order, skipping those already sent."""
        self.busy = True
        try:
            return self._replay(client, last_id)
        finally:
            self.busy = False

    def _replay(self, client: redis.Redis, last_id: str) -> int:
        sent = 0
        cursor = last_id
        # The newest event read: a live event up to it need not be sent again. Not `last_id` itself,
        # which may lie past the stream's end (the live events after the end would then be skipped).
        newest = self.last_sent_id
        low, high = id_order(self.sent_from), id_order(self.last_sent_id)
        # Nothing follows the largest id, and Redis refuses a range that starts after it.
        while self.alive and not self.halted and id_order(cursor) != (_U64_MAX, _U64_MAX):
            batch = events.read_since(client, self.org_id, cursor, count=REPLAY_BATCH)
            for event in batch:
                cursor = event["id"]
                if low < id_order(cursor) <= high:
                    continue
                if sent:
                    pause()
                if not self.send(event):
                    return sent
                sent += 1
            if batch and id_order(cursor) > id_order(newest):
                newest = cursor
            if len(batch) < REPLAY_BATCH:
                break
        self.last_sent_id = newest
        if id_order(last_id) < low:
            self.sent_from = last_id
        return sent


def pause() -> None:
    """Let the socket's other writer in between two messages of a batch: simple-websocket's own thread
    sends pings and answers through the same wire, one write at a time, and a ping held back past the
    next one's time closes the socket ("Ping/Pong timeout"). A thread switch, or under gevent a turn
    of the event loop (a write that does not block never yields on its own)."""
    time.sleep(0)


def valid_id(event_id: str) -> bool:
    """Whether `event_id` is a stream id Redis accepts: "<ms>-<seq>", each below 2**64 (ASCII digits)."""
    match = _ID.fullmatch(event_id)
    return match is not None and all(int(part) <= _U64_MAX for part in match.groups())


def id_order(event_id: str) -> tuple[int, int]:
    """A stream id as a pair that sorts as Redis orders the ids."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
