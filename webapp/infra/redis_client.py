"""The Redis connection of the process, with short timeouts so a slow Redis degrades, not hangs."""

from __future__ import annotations

import redis
from flask import Flask, current_app

from webapp.analytics.cache import ENTRY_PREFIX, GEN_PREFIX
from webapp.analytics.popular import Tally
from webapp.infra.near_cache import NearCache, NearView
from webapp.infra.redis_wire import Wire
from webapp.security.ratelimit import Leases
from webapp.security.revocation import PREFIX as REVOKED_PREFIX

# The keys a near cache copies: generations, cached answers, revocation marks.
NEAR_PREFIXES = (GEN_PREFIX, ENTRY_PREFIX, REVOKED_PREFIX)


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
        # And most need none: copies kept coherent by Redis, budget taken in blocks, counts sent later.
        # The near cache connects on first use, so processes that never serve a request never do.
        app.extensions["near_cache"] = NearCache.for_url(
            url,
            prefixes=NEAR_PREFIXES,
            timeout=app.config["REDIS_SOCKET_TIMEOUT"],
            max_bytes=app.config["NEAR_CACHE_MAX_BYTES"],
        )
        app.extensions["budget_leases"] = Leases()
        app.extensions["popular_tally"] = Tally()


def get_redis() -> redis.Redis:
    """The process-wide Redis client (a pool; safe to share across threads)."""
    return current_app.extensions["redis"]


def get_wire() -> Wire | None:
    """The process's raw round-trip wire to the same Redis (None where the URL needs redis-py)."""
    return current_app.extensions.get("redis_wire")


def near_view() -> NearView | None:
    """A view of the process's near cache for this request, or None when it cannot be used now."""
    near: NearCache | None = current_app.extensions.get("near_cache")
    return near.begin() if near is not None else None


def get_leases() -> Leases:
    """The process's budget blocks (see ratelimit.Leases)."""
    return current_app.extensions["budget_leases"]


def get_tally() -> Tally:
    """Requests answered from the near cache, counted for the popularity sets."""
    return current_app.extensions["popular_tally"]
