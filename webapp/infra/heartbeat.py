"""Workers and beat leave timestamps in Redis so health can say who was seen, when, and on which queues."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis

from webapp.core.timeutil import utcnow

WORKERS_KEY = "an:ops:workers"
# hostname -> the queues it consumes, comma-separated (written with each beat).
WORKER_QUEUES_KEY = "an:ops:worker_queues"
BEAT_KEY = "an:ops:beat_last_run"
# A worker that has not beaten for this long is no longer listed.
WORKER_STALE_SECONDS = 60


def worker_beat(client: redis.Redis, hostname: str, queues: Iterable[str]) -> None:
    pipe = client.pipeline(transaction=True)  # never seen without its queues
    pipe.zadd(WORKERS_KEY, {hostname: utcnow().timestamp()})
    pipe.hset(WORKER_QUEUES_KEY, hostname, ",".join(sorted(queues)))
    pipe.execute()


def worker_gone(client: redis.Redis, hostname: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.zrem(WORKERS_KEY, hostname)
    pipe.hdel(WORKER_QUEUES_KEY, hostname)
    pipe.execute()


def workers_seen(client: redis.Redis) -> list[dict[str, Any]]:
    """Workers that beat within the last minute, with when and the queues they take."""
    cutoff = utcnow().timestamp() - WORKER_STALE_SECONDS
    # One transaction: a worker beating meanwhile is either pruned with its old beat or listed with
    # its new one, never removed as it beats. (A pruned worker's queues stay in the hash, one field
    # per host name, until it beats again or says it is gone.)
    pipe = client.pipeline(transaction=True)
    pipe.zremrangebyscore(WORKERS_KEY, "-inf", cutoff)
    pipe.zrange(WORKERS_KEY, 0, -1, withscores=True)
    pipe.hgetall(WORKER_QUEUES_KEY)
    _, rows, queues = pipe.execute()
    return [
        {
            "hostname": name.decode(),
            "last_seen": datetime.fromtimestamp(score, UTC).isoformat(),
            "queues": [q for q in queues.get(name, b"").decode().split(",") if q],
        }
        for name, score in rows
    ]


def beat_ran(client: redis.Redis) -> None:
    client.set(BEAT_KEY, utcnow().isoformat())


def beat_last_run(client: redis.Redis) -> str | None:
    value = client.get(BEAT_KEY)
    return value.decode() if value else None
