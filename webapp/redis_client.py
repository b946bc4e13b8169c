"""The Redis connection of the process, with short timeouts so a slow Redis degrades, not hangs."""

from __future__ import annotations

import redis
from flask import Flask, current_app

from webapp.redis_wire import Wire


def make_redis(url: str, socket_timeout: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=15,
        retry_on_timeout=False,
        decode_responses=False,
    )


def init_app(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    if not url:
        raise RuntimeError("No Redis configured: set REDIS_URL, or start the embedded one with `make run`.")
    if "redis" not in app.extensions:
        app.extensions["redis"] = make_redis(url, app.config["REDIS_SOCKET_TIMEOUT"])
        # The request hot path's round trips (token checks, cache lookups) go over a leaner wire.
        app.extensions["redis_wire"] = Wire.for_url(url, app.config["REDIS_SOCKET_TIMEOUT"])


def get_redis() -> redis.Redis:
    """The process-wide Redis client (a pool; safe to share across threads)."""
    return current_app.extensions["redis"]


def get_wire() -> Wire | None:
    """The process's raw round-trip wire to the same Redis (None where the URL needs redis-py)."""
    return current_app.extensions.get("redis_wire")
