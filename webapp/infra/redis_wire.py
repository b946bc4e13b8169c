"""One round trip of pipelined Redis commands on a raw connection of the calling thread.

The request hot path (token checks and the cache lookup of a hit) sends a handful of commands and
waits for their replies, once per request. Through redis-py's pipeline that costs about 60 us of
CPU (pool checkout with a readiness poll, per-command bookkeeping, timeouts polled before every
send and receive) against about 16 us here: the commands are packed and the replies parsed by
hiredis, on a plain blocking socket whose timeouts the kernel enforces (SO_SNDTIMEO/SO_RCVTIMEO),
so a round trip releases the GIL twice rather than five times. Everything else keeps redis-py.

Failures raise redis-py's exceptions, so callers handle them as they handle redis-py's: a
connection that failed or timed out is closed and opened again on the next call, and a round trip
whose connection had gone stale (Redis restarted) is sent once more on a new one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import UnixDomainSocketConnection, parse_url

Command = Sequence[str | bytes | int | float]


class Connection:
    """A blocking socket to Redis with its reply parser."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader(replyError=redis.exceptions.ResponseError)
        self.pid = os.getpid()

    def send(self, commands: Sequence[Command]) -> None:
        try:
            self.sock.sendall(b"".join(hiredis.pack_command(tuple(command)) for command in commands))
        except OSError as exc:
            raise _error(exc) from exc

    def read(self, count: int) -> list[Any]:
        """The next `count` replies (an error reply is a ResponseError in the list)."""
        replies: list[Any] = []
        while len(replies) < count:
            reply = self.reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            try:
                data = self.sock.recv(65536)
            except OSError as exc:  # EAGAIN when SO_RCVTIMEO expires, or a reset
                raise _error(exc) from exc
            if not data:
                raise redis.ConnectionError("Redis closed the connection")
            self.reader.feed(data)
        return replies

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def url_options(url: str) -> dict[str, Any]:
    """redis-py's reading of `url`; ValueError for what a plain socket cannot reach (TLS)."""
    options = parse_url(url)
    if options.get("connection_class") not in (None, UnixDomainSocketConnection):
        raise ValueError("only plain TCP and Unix socket connections")
    return options


def connect(options: dict[str, Any], timeout: float) -> Connection:
    """A connection to the Redis of `options` (from url_options), authenticated, on the URL's database.

    Connecting, sending and receiving each give up after `timeout` seconds (redis.TimeoutError).
    """
    conn = Connection(_open(options, timeout))
    setup: list[Command] = []
    if options.get("password") is not None:
        user = options.get("username")
        setup.append(("AUTH", user, options["password"]) if user else ("AUTH", options["password"]))
    if int(options.get("db", 0) or 0):
        setup.append(("SELECT", int(options["db"])))
    if not setup:
        return conn
    try:
        conn.send(setup)
        for reply in conn.read(len(setup)):
            if isinstance(reply, redis.ResponseError):
                raise redis.AuthenticationError(str(reply))
    except BaseException:
        conn.close()
        raise
    return conn


def _open(options: dict[str, Any], timeout: float) -> socket.socket:
    try:
        if "path" in options:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(options["path"])
        else:
            sock = socket.create_connection(
                (options.get("host", "localhost"), int(options.get("port", 6379))), timeout=timeout
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        raise _error(exc) from exc
    _kernel_timeouts(sock, timeout)
    return sock


class Wire:
    """Pipelined round trips to the Redis at `url`, on one connection per thread."""

    def __init__(self, url: str, timeout: float) -> None:
        self._options = url_options(url)
        self._timeout = timeout
        self._local = threading.local()

    @classmethod
    def for_url(cls, url: str, timeout: float) -> Wire | None:
        """A Wire for `url`, or None where it does not apply (TLS, or a URL redis-py alone reads)."""
        try:
            return cls(url, timeout)
        except ValueError:
            return None

    def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands`, sent together; an error reply is a ResponseError in the list."""
        try:
            return self._round_trip(commands)
        except redis.ConnectionError:
            # A connection Redis closed (a restart) fails on first use: one retry on a fresh one.
            return self._round_trip(commands)

    def _round_trip(self, commands: Sequence[Command]) -> list[Any]:
        conn = self._connection()
        try:
            conn.send(commands)
            return conn.read(len(commands))
        except BaseException:
            self._drop(conn)  # its state is unknown: never reuse it
            raise

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.pid == os.getpid():
            return conn
        conn = connect(self._options, self._timeout)
        self._local.conn = conn
        return conn

    def _drop(self, conn: Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()


def round_trip(client: redis.Redis, wire: Wire | None, commands: Sequence[Command]) -> list[Any]:
    """The replies to `commands` in one round trip: on `wire` when there is one, else a pipeline of
    `client`. Error replies are ResponseErrors in the list; a failed round trip raises RedisError."""
    if wire is not None:
        return wire.execute(commands)
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Blocking mode with send and receive timeouts kept by the kernel (Python's own timeouts poll first)."""
    seconds = int(timeout)
    interval = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
    except OSError:
        return  # keep Python's timeout: slower, as safe
    sock.settimeout(None)


def _error(exc: OSError) -> redis.RedisError:
    if isinstance(exc, BlockingIOError | TimeoutError):
        return redis.TimeoutError(f"Redis did not answer in time: {exc}")
    return redis.ConnectionError(f"Redis connection failed: {exc}")
