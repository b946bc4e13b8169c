"""The Redis connection of the process, with short timeouts so a slow Redis degrades, not hangs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis
from flask import Flask, current_app

from webapp.infra.near_cache import NearCache, NearView

Command = Sequence[str | bytes | int | float]


# Connections one client opens at most. Under the gevent web worker thousands of greenlets (every
# socket and request) share a client; past this many commands in flight they wait for a connection
# (a few times the socket timeout at most) instead of each opening one, or failing: redis-py's
# ordinary pool refuses a 101st connection outright.
MAX_CONNECTIONS = 64


def make_redis(url: str, socket_timeout: float = 0.5) -> redis.Redis:
    """A redis-py client for `url` that gives up after `socket_timeout` seconds."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=4 * socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=15,
        retry_on_timeout=False,
        decode_responses=False,
    )
    return redis.Redis(connection_pool=pool)


def init_app(app: Flask) -> None:
    """The process's client and its near cache (which copies nothing until told what)."""
    url = app.config["REDIS_URL"]
    if not url:
        raise RuntimeError("No Redis configured: set REDIS_URL, or start the embedded one with `make run`.")
    if "redis" not in app.extensions:
        timeout = app.config["REDIS_SOCKET_TIMEOUT"]
        app.extensions["redis"] = make_redis(url, timeout)
        # The near cache connects on first use, so processes that never serve a request never do.
        app.extensions["near_cache"] = NearCache.for_url(
            url, prefixes=(), timeout=timeout, max_bytes=app.config["NEAR_CACHE_MAX_BYTES"]
        )


def copy_near(app: Flask, prefixes: Iterable[str]) -> None:
    """Have the process's near cache copy keys under `prefixes` (each owner of such keys asks for its own)."""
    near: NearCache | None = app.extensions.get("near_cache")
    if near is not None:
        near.watch(prefixes)


def get_redis() -> redis.Redis:
    """The process-wide Redis client (a pool; safe to share across threads)."""
    return current_app.extensions["redis"]


def round_trip(commands: Sequence[Command]) -> list[Any]:
    """The replies to `commands`, sent together (error replies are exceptions in the list).

    A redis-py pipeline. A bare hiredis socket (the hand-written wire this replaced) would save some
    30 us a round trip, 200 us with 8 threads sharing the pool (python -m bench wire); with the near
    cache a hit makes 0.04 round trips, so that is under 0.01 ms of a 3 to 4 ms hit, and without it
    two, at most 0.4 to 0.7 ms: nothing a user feels, for a second client to keep.
    """
    pipe = get_redis().pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


def near_view() -> NearView | None:
    """A view of the process's near cache for this request, or None when it cannot be used now."""
    near: NearCache | None = current_app.extensions["near_cache"]
    return near.begin() if near is not None else None
