"""Workers and beat leave timestamps in Redis so health can say who was seen, and when."""

from __future__ import annotations

from typing import Any

import redis

from webapp.core.timeutil import utcnow

WORKERS_KEY = "an:ops:workers"
BEAT_KEY = "an:ops:beat_last_run"
# A worker that has not beaten for this long is no longer listed.
WORKER_STALE_SECONDS = 60


def worker_beat(client: redis.Redis, hostname: str) -> None:
    client.zadd(WORKERS_KEY, {hostname: utcnow().timestamp()})


def worker_gone(client: redis.Redis, hostname: str) -> None:
    client.zrem(WORKERS_KEY, hostname)


def workers_seen(client: redis.Redis) -> list[dict[str, Any]]:
    """Workers that beat within the last minute, with when."""
    cutoff = utcnow().timestamp() - WORKER_STALE_SECONDS
    client.zremrangebyscore(WORKERS_KEY, "-inf", cutoff)
    rows = client.zrange(WORKERS_KEY, 0, -1, withscores=True)
    return [{"hostname": name.decode(), "last_seen": score} for name, score in rows]


def beat_ran(client: redis.Redis) -> None:
    client.set(BEAT_KEY, utcnow().isoformat())


def beat_last_run(client: redis.Redis) -> str | None:
    value = client.get(BEAT_KEY)
    return value.decode() if value else None
