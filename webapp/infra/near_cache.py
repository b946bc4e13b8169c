"""Process-local copies of hot Redis keys, kept coherent by Redis's own invalidation messages.

A request would otherwise cost a round trip to Redis for keys that almost never change between two
requests; the owners of such keys name their prefixes (`watch`) when the app is built. Redis 6+
tells a client which keys changed ("client-side caching": CLIENT TRACKING in broadcast mode), so
each process keeps one connection subscribed to those messages for the key prefixes it copies. Before
every use, the messages that have arrived are read without waiting (a non-blocking recv, no round
trip) and the copies they name are dropped, so a request never sees a value older than the last
change Redis had told this process about when the request began.

Copies are trusted only while that connection is known to be alive: it is pinged every
`HEARTBEAT_SECONDS`, and an unanswered ping, a closed connection, a backlog too long to read, or a
flush of the server drops every copy. While the connection is down nothing is copied or served
here, and callers take the ordinary round trip. A value fetched from Redis is kept only if no
message about its key arrived since the request began (`NearView.put`), so a change racing the
fetch can never leave a stale copy behind.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import AbstractConnection, Connection, UnixDomainSocketConnection

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL = b"__redis__:invalidate"
HEARTBEAT_SECONDS = 1.0
# A ping unanswered this long means the connection can no longer be trusted to bring messages.
DEAD_AFTER_SECONDS = 3.0
RETRY_SECONDS = 1.0
REFUSED_RETRY_SECONDS = 60.0
# Error replies that say "not now" rather than "not this server": Redis loading its data, busy, a replica.
TRANSIENT_REPLIES = ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "NOAUTH")
# Reading more than this in one go (some 4 MB) means the process fell far behind: start over instead.
MAX_BACKLOG_MESSAGES = 50_000
# Keys named by messages, remembered so a fetch racing them is not kept; bounded.
MAX_TOUCHED = 10_000


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class _Copy:
    expires_at: float
    value: Any
    size: int


class NearCache:
    """Copies of Redis keys under `prefixes`, for one process, bounded to `max_bytes` (least recent out)."""

    def __init__(self, url: str, *, prefixes: tuple[str, ...], timeout: float, max_bytes: int) -> None:
        # redis-py reads the URL and makes each connection: authenticated, on the URL's database,
        # giving up after `timeout`; no health checks or client-info commands of its own. RESP2, where
        # the invalidation messages arrive as messages of a subscribed channel, read like any reply.
        self._pool = redis.ConnectionPool.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, driver_info=None, protocol=2
        )
        if self._pool.connection_class not in (Connection, UnixDomainSocketConnection):
            raise ValueError("only plain TCP and Unix socket connections")
        self._prefixes = prefixes
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: AbstractConnection | None = None
        self._connecting = False
        self._retry_at = 0.0
        self._pid = os.getpid()
        # Every copy belongs to one epoch of the connection; a new connection starts a new epoch.
        self._epoch = 0
        # Messages applied so far, and the message count at which each key was last named.
        self._seq = 0
        self._touched: dict[str, int] = {}
        self._floor = 0
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._bytes = 0
        self._ping_sent_at: float | None = None
        self._last_pong_at = 0.0

    @classmethod
    def for_url(
        cls, url: str, *, prefixes: tuple[str, ...], timeout: float, max_bytes: int
    ) -> NearCache | None:
        """A near cache for `url`, or None where it does not apply (disabled, or TLS)."""
        if max_bytes <= 0:
            return None
        try:
            return cls(url, prefixes=prefixes, timeout=timeout, max_bytes=max_bytes)
        except ValueError:
            return None

    def begin(self) -> NearView | None:
        """A view for one request, after reading the messages that have arrived; None when the copies
        cannot be trusted now (no live connection), in which case Redis must be asked."""
        with self._lock:
            if not self._prefixes:
                return None  # nothing to copy: a connection would be told of every key instead
            if self._pid != os.getpid():
                self._forget_connection()  # a forked child must not share the parent's socket
                self._pid = os.getpid()
            if self._conn is not None:
                if not self._sync():
                    return None
                return NearView(self, self._epoch, self._seq)
            if self._connecting or time.monotonic() < self._retry_at:
                return None
            self._connecting = True
            prefixes = self._prefixes
        self._reconnect(prefixes)
        return None  # this request takes the round trip; the next ones find the connection ready

    def watch(self, prefixes: Iterable[str]) -> None:
        """Copy keys under `prefixes` too (a connection open already is opened again to ask for them)."""
        with self._lock:
            self._prefixes = tuple(dict.fromkeys((*self._prefixes, *prefixes)))
            self._forget_connection()

    def size(self) -> tuple[int, int]:
        """How many copies are held, and their bytes."""
        with self._lock:
            return len(self._copies), self._bytes

    def close(self) -> None:
        with self._lock:
            self._forget_connection()

    # --- under the lock ------------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        copy = self._copies.get(key)
        if copy is None:
            return MISSING
        if copy.expires_at <= time.monotonic():
            self._drop(key)
            return MISSING
        self._copies.move_to_end(key)
        return copy.value

    def _fresh(self, epoch: int) -> bool:
        """Whether copies made in `epoch` may still be kept, after reading what has arrived since."""
        return self._conn is not None and epoch == self._epoch and self._sync() and epoch == self._epoch

    def _put(self, seq: int, key: str, value: Any, ttl: float, size: int) -> None:
        """Keep a copy fetched after message `seq`, unless a later message named the key."""
        if size > self._max_bytes or self._floor > seq or self._touched.get(key, -1) > seq:
            return
        self._drop(key)
        self._copies[key] = _Copy(time.monotonic() + ttl, value, size)
        self._bytes += size
        while self._bytes > self._max_bytes:
            oldest = next(iter(self._copies))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        copy = self._copies.pop(key, None)
        if copy is not None:
            self._bytes -= copy.size

    def _clear(self) -> None:
        self._copies.clear()
        self._bytes = 0
        self._touched.clear()
        self._seq += 1
        self._floor = self._seq

    def _sync(self) -> bool:
        """Apply the messages that have arrived and keep the heartbeat; False (all dropped) on failure."""
        conn = self._conn
        assert conn is not None
        read = 0
        try:
            # Polls without waiting; raises once the messages before a close are read, so a close
            # that follows the data is seen now.
            while conn.can_read(timeout=0):
                self._apply(conn.read_response())
                read += 1
                if read > MAX_BACKLOG_MESSAGES:
                    raise ConnectionError(f"more than {MAX_BACKLOG_MESSAGES} invalidations behind")
            self._heartbeat(conn)
        except (OSError, redis.RedisError) as exc:
            log.warning("near cache off until its connection is back: %s", exc)
            self._forget_connection()
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return False
        return True

    def _apply(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 2:
            return
        kind = message[0]
        if kind == b"message" and len(message) == 3 and message[1] == INVALIDATE_CHANNEL:
            keys = message[2]
            if keys is None:  # FLUSHALL / FLUSHDB: every key changed
                self._clear()
                return
            for raw in keys:
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                self._seq += 1
                self._touched[key] = self._seq
                self._drop(key)
            if len(self._touched) > MAX_TOUCHED:
                self._touched.clear()
                self._floor = self._seq
        elif kind == b"pong":
            self._ping_sent_at = None
            self._last_pong_at = time.monotonic()

    def _heartbeat(self, conn: AbstractConnection) -> None:
        now = time.monotonic()
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at > DEAD_AFTER_SECONDS:
                raise ConnectionError(f"no answer to a ping in {DEAD_AFTER_SECONDS} s")
        elif now - self._last_pong_at > HEARTBEAT_SECONDS:
            conn.send_command("PING")  # answered as a message, read by a later _sync
            self._ping_sent_at = now

    def _forget_connection(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()  # closes without shutting down a socket a forked parent still uses
        self._conn = None
        self._clear()
        self._epoch += 1
        self._ping_sent_at = None

    # --- outside the lock ----------------------------------------------------------------------

    def _reconnect(self, watched: tuple[str, ...]) -> None:
        """Open and subscribe the invalidation connection for the `watched` prefixes (one thread at a
        time, others go on)."""
        conn: AbstractConnection | None = None
        try:
            conn = self._pool.make_connection()
            conn.connect()
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()  # raises an error reply (LOADING while Redis starts, say)
            if not isinstance(client_id, int):
                raise redis.ResponseError(f"unexpected answer to CLIENT ID: {client_id!r}")
            prefixes = [part for prefix in watched for part in ("PREFIX", prefix)]
            # Tracking on this very connection: its messages stop the moment it is gone.
            conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", *prefixes)
            conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            conn.read_response()
            subscribed = conn.read_response()
            if not isinstance(subscribed, list) or subscribed[:1] != [b"subscribe"]:
                raise redis.ResponseError(f"unexpected answer to SUBSCRIBE: {subscribed!r}")
        except Exception as exc:
            if conn is not None:
                conn.disconnect()
            log.warning("near cache off (no invalidation messages from Redis): %s", exc)
            with self._lock:
                self._connecting = False
                self._retry_at = time.monotonic() + _retry_after(exc)
            return
        with self._lock:
            self._connecting = False
            if self._pid != os.getpid() or watched != self._prefixes:
                conn.disconnect()  # a fork, or prefixes added meanwhile: the next request connects again
                return
            self._forget_connection()
            self._conn = conn
            self._last_pong_at = time.monotonic()


def _retry_after(exc: Exception) -> float:
    """Seconds before the next try: a server that refuses tracking (before Redis 6, a proxy) will not
    change its mind soon; anything else (a restart, LOADING) is worth another try in a second."""
    refused = isinstance(exc, redis.ResponseError) and not str(exc).startswith(TRANSIENT_REPLIES)
    return REFUSED_RETRY_SECONDS if refused else RETRY_SECONDS


class NearView:
    """One request's use of the near cache: reads copies, and keeps what it fetched unless a message
    about the key arrived after the view began."""

    __slots__ = ("_cache", "_epoch", "_seq")

    def __init__(self, cache: NearCache, epoch: int, seq: int) -> None:
        self._cache = cache
        self._epoch = epoch
        self._seq = seq

    def get(self, key: str) -> Any:
        """The copy of `key`, or MISSING."""
        with self._cache._lock:
            if self._epoch != self._cache._epoch:
                return MISSING
            return self._cache._get(key)

    def get_many(self, keys: list[str]) -> list[Any] | None:
        """The copies of all `keys`, or None when any is missing."""
        with self._cache._lock:
            if self._epoch != self._cache._epoch:
                return None
            out = []
            for key in keys:
                value = self._cache._get(key)
                if value is MISSING:
                    return None
                out.append(value)
            return out

    def put(self, key: str, value: Any, *, ttl: float, size: int = 64) -> None:
        """Keep `value`, fetched from Redis during this view, as the copy of `key` for at most `ttl` s."""
        self.put_many([(key, value)], ttl=ttl, size=size)

    def put_many(self, items: list[tuple[str, Any]], *, ttl: float, size: int = 64) -> None:
        """Keep each (key, value) as `put` does; `size` is each one's."""
        if ttl <= 0:
            return
        with self._cache._lock:
            # Messages that arrived during the caller's round trip may name these keys.
            if not self._cache._fresh(self._epoch):
                return
            for key, value in items:
                self._cache._put(self._seq, key, value, ttl, size)
