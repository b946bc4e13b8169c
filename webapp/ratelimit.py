"""Per-organization request budgets (fixed one-minute windows in Redis)."""

from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def group_of(endpoint: str | None) -> str | None:
    """Which budget a route spends: analytics, jobs, exports, or none."""
    if not endpoint:
        return None
    if endpoint.startswith("api.exports.") or endpoint == "api.analytics.export":
        return "exports"
    if endpoint.startswith(("api.jobs.", "api.ticket_imports.")) or endpoint == "api.cache.refresh":
        return "jobs"
    if endpoint.startswith(("api.analytics.", "api.cache.")):
        return "analytics"
    return None


def spend(client: redis.Redis, org_id: int, group: str, limit: int) -> int | None:
    """Count one request; the seconds to wait when the budget is spent, else None.

    A Redis failure lets the request through: budgets protect capacity, they are not access control.
    """
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"an:rl:{org_id}:{group}:{window}"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS + 1)
        used = pipe.execute()[0]
    except redis.RedisError as exc:
        log.debug("rate limit not checked org=%s: %s", org_id, exc)
        return None
    if used <= limit:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
