"""Per-organization request budgets (fixed one-minute windows in Redis)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from webapp.redis_wire import round_trip

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


@dataclass(frozen=True)
class Window:
    """The current budget window of one organization and group: its counter key and when it ends."""

    key: str
    ends_at: float

    def commands(self) -> list[tuple[str, str, int] | tuple[str, str]]:
        """The commands counting one request (the first reply of the two is the count so far)."""
        return [("INCR", self.key), ("EXPIRE", self.key, WINDOW_SECONDS + 1)]

    def wait(self, used: int, limit: int) -> int | None:
        """The seconds to wait when `used` exceeds `limit`, else None."""
        if used <= limit:
            return None
        return max(1, int(self.ends_at - time.time()) + 1)


def window(org_id: int, group: str, now: float | None = None) -> Window:
    moment = time.time() if now is None else now
    index = int(moment // WINDOW_SECONDS)
    return Window(f"an:rl:{org_id}:{group}:{index}", (index + 1) * WINDOW_SECONDS)


def spend(client: redis.Redis, org_id: int, group: str, limit: int) -> int | None:
    """Count one request; the seconds to wait when the budget is spent, else None.

    A Redis failure lets the request through: budgets protect capacity, they are not access control.
    """
    current = window(org_id, group)
    try:
        used = round_trip(client, None, current.commands())[0]
        if isinstance(used, Exception):
            raise used
    except redis.RedisError as exc:
        log.debug("rate limit not checked org=%s: %s", org_id, exc)
        return None
    return current.wait(used, limit)
