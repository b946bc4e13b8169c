"""Which analytics queries each organization asks most, so beat and refresh jobs can warm them."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

TOP_N = 20
# Recomputers by query kind: (session, client, org_id, params) -> None; registered by the read side.
RECOMPUTERS: dict[str, Callable[[Session, redis.Redis, int, dict[str, Any]], None]] = {}


def popular_key(org_id: int) -> str:
    return f"an:popular:{org_id}"


def register(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        RECOMPUTERS[kind] = fn
        return fn

    return decorator


def record(client: redis.Redis, org_id: int, kind: str, params: dict[str, Any]) -> None:
    """Count one request of this query (best effort: a Redis failure is ignored)."""
    member = json.dumps({"kind": kind, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    with contextlib.suppress(redis.RedisError):
        client.zincrby(popular_key(org_id), 1, member)


def top(client: redis.Redis, org_id: int, n: int = TOP_N) -> list[dict[str, Any]]:
    """The organization's `n` most requested queries, most requested first."""
    return [json.loads(member) for member in client.zrevrange(popular_key(org_id), 0, n - 1)]


def recompute(session: Session, client: redis.Redis, org_id: int, entry: dict[str, Any]) -> bool:
    """Recompute one popular query into the cache; False if its kind is unknown or it fails."""
    fn = RECOMPUTERS.get(entry.get("kind", ""))
    if fn is None:
        return False
    try:
        fn(session, client, org_id, entry["params"])
    except Exception:
        log.exception("recompute of %s failed org=%s", entry.get("kind"), org_id)
        session.rollback()
        return False
    return True
