"""Which analytics queries each organization asks most, so refresh jobs can warm them."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import redis

TOP_N = 20
FLUSH_SECONDS = 5.0
# A set keeps its KEEP most requested members (a flood of distinct one-off queries pushes out only
# other one-offs) and goes away when nothing was counted in it for TTL_SECONDS.
KEEP = 10 * TOP_N
TTL_SECONDS = 7 * 24 * 3600


def upkeep(zset: str) -> list[tuple[str, str, int] | tuple[str, str, int, int]]:
    """The commands that bound a popularity set after counting in it: trim to KEEP, expire."""
    return [("ZREMRANGEBYRANK", zset, 0, -KEEP - 1), ("EXPIRE", zset, TTL_SECONDS)]


def popular_key(org_id: int) -> str:
    return f"an:popular:{org_id}"


def member(kind: str, params: dict[str, Any]) -> str:
    """How one query is named in the popularity set."""
    return json.dumps({"kind": kind, "params": params}, sort_keys=True, separators=(",", ":"), default=str)


def top_members(client: redis.Redis, org_id: int, n: int = TOP_N) -> list[tuple[bytes, dict[str, Any]]]:
    """The organization's `n` most requested queries, most requested first, each with its member as
    stored (what `forget` takes)."""
    return [(member, json.loads(member)) for member in client.zrevrange(popular_key(org_id), 0, n - 1)]


def top(client: redis.Redis, org_id: int, n: int = TOP_N) -> list[dict[str, Any]]:
    """The organization's `n` most requested queries, most requested first."""
    return [query for _, query in top_members(client, org_id, n)]


def forget(client: redis.Redis, org_id: int, member: bytes) -> None:
    """Drop one query from the organization's popularity set (one refused when asked again)."""
    client.zrem(popular_key(org_id), member)


class Tally:
    """Requests counted in this process and added to the popularity sets at most every `every` seconds.

    For requests answered without a round trip to Redis: the counts ride on a later one.
    """

    def __init__(self, every: float = FLUSH_SECONDS) -> None:
        self._every = every
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._due_at = time.monotonic() + every

    def add(self, zset: str, member: str) -> list[tuple[Any, ...]]:
        """Count one request; the ZINCRBY commands to send now when the counts are due, else []."""
        with self._lock:
            self._counts[(zset, member)] += 1
            now = time.monotonic()
            if now < self._due_at:
                return []
            counts, self._counts = self._counts, Counter()
            self._due_at = now + self._every
        commands: list[tuple[Any, ...]] = [
            ("ZINCRBY", zset, n, member) for (zset, member), n in counts.items()
        ]
        for zset in {zset for zset, _ in counts}:
            commands += upkeep(zset)
        return commands
