"""Analytics cache: keys carry generation counters, so invalidation is one INCR per family."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

log = logging.getLogger(__name__)

FAMILIES = (
    "volume",
    "sentiment",
    "response",
    "resolution",
    "backlog",
    "sla",
    "performance",
    "dashboard",
    "dist_status",
    "dist_priority",
    "dist_channel",
    "dist_category",
    "dist_assigned_to",
    "snapshots",
)
DISTRIBUTIONS = ("dist_status", "dist_priority", "dist_channel", "dist_category", "dist_assigned_to")

# Which cached answers a ticket event can change.
EVENT_FAMILIES: dict[str, frozenset[str]] = {
    "created": frozenset({"volume", "sentiment", "dashboard", "backlog", *DISTRIBUTIONS}),
    "status_changed": frozenset({"dist_status", "resolution", "backlog"}),
    "priority_changed": frozenset({"dist_priority", "sla"}),
    "assigned": frozenset({"dist_assigned_to"}),
    "first_response": frozenset({"response", "performance", "sla"}),
    "resolved": frozenset({"resolution", "performance", "sla", "backlog"}),
    "reopened": frozenset({"resolution", "performance", "sla", "backlog"}),
}
# Ticket fields whose change writes no event but still changes an answer.
FIELD_FAMILIES: dict[str, frozenset[str]] = {
    "sentiment_score": frozenset({"sentiment", "dashboard"}),
    "channel": frozenset({"dist_channel"}),
    "category": frozenset({"dist_category"}),
}

LOCK_SECONDS = 30
WAIT_SECONDS = 5.0
# Compare-and-delete: release the lock only if it still holds our token.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def gen_key(org_id: int, family: str) -> str:
    return f"an:gen:{org_id}:{family}"


def families_for(event_types: Iterable[str], fields: Iterable[str] = ()) -> set[str]:
    """The families a change with these event types and changed fields invalidates."""
    out: set[str] = set()
    for event_type in event_types:
        out |= EVENT_FAMILIES.get(event_type, frozenset())
    for name in fields:
        out |= FIELD_FAMILIES.get(name, frozenset())
    return out


def bump(client: redis.Redis, org_id: int, families: Iterable[str]) -> None:
    """Invalidate every cached answer that depends on `families`: one INCR each, whatever is cached."""
    names = sorted(set(families))
    if not names:
        return
    pipe = client.pipeline(transaction=False)
    for family in names:
        pipe.incr(gen_key(org_id, family))
    pipe.execute()


def bump_all(client: redis.Redis, org_id: int) -> None:
    bump(client, org_id, FAMILIES)


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(
    org_id: int, families: Iterable[str], generations: Iterable[int], params: dict[str, Any]
) -> str:
    digest = hashlib.sha256(canonical(params).encode()).hexdigest()
    gens = ".".join(f"{f}{g}" for f, g in zip(families, generations, strict=True))
    return f"an:{org_id}:{gens}:{digest}"


@dataclass
class CacheMeta:
    cache: str  # hit | miss | bypass
    computed_at: str

    def as_dict(self) -> dict[str, str]:
        return {"cache": self.cache, "computed_at": self.computed_at}


def _now() -> str:
    return datetime.now(UTC).isoformat()


# One round trip for a lookup: read the generations, build the key as cache_key() does, count the
# request in the popularity set (when asked) and GET the entry. KEYS: generation keys; ARGV: key
# prefix, digest, popularity set, popularity member, then the family names in KEYS' order.
_LOOKUP = """
local gens = redis.call('MGET', unpack(KEYS))
local parts = {}
for i = 1, #KEYS do parts[i] = ARGV[4 + i] .. (gens[i] or '0') end
local key = ARGV[1] .. table.concat(parts, '.') .. ':' .. ARGV[2]
if ARGV[3] ~= '' then redis.call('ZINCRBY', ARGV[3], 1, ARGV[4]) end
return {key, redis.call('GET', key)}
"""


def _lookup(
    client: redis.Redis,
    org_id: int,
    names: list[str],
    params: dict[str, Any],
    count_in: tuple[str, str] | None,
) -> tuple[str, bytes | None]:
    digest = hashlib.sha256(canonical(params).encode()).hexdigest()
    zset, member = count_in or ("", "")
    gen_keys = [gen_key(org_id, f) for f in names]
    if not gen_keys:
        # EVAL needs a key to MGET; an answer that depends on no family has an empty generation list.
        key = f"an:{org_id}::{digest}"
        if zset:
            client.zincrby(zset, 1, member)
        return key, client.get(key)
    key, cached = client.eval(
        _LOOKUP, len(gen_keys), *gen_keys, f"an:{org_id}:", digest, zset, member, *names
    )
    return key.decode() if isinstance(key, bytes) else key, cached


def read_through(
    client: redis.Redis,
    org_id: int,
    families: Iterable[str],
    params: dict[str, Any],
    compute: Callable[[], Any],
    *,
    ttl: int,
    force: bool = False,
    count_in: tuple[str, str] | None = None,
) -> tuple[Any, CacheMeta]:
    """The cached answer for `params`, or compute it once (others wait) and store it for `ttl` seconds.

    When Redis is unreachable the answer is computed and returned with cache "bypass".
    `force` recomputes and overwrites whatever is cached (background refresh). `count_in`, a
    (sorted set, member) pair, counts the request there in the same round trip as the lookup.
    """
    names = sorted(set(families))
    try:
        key, cached = _lookup(client, org_id, names, params, count_in)
    except redis.RedisError as exc:
        log.warning("cache unavailable org=%s: %s", org_id, exc)
        return compute(), CacheMeta("bypass", _now())
    if force:
        cached = None
    if cached is not None:
        entry = json.loads(cached)
        return entry["value"], CacheMeta("hit", entry["computed_at"])

    token = uuid.uuid4().hex
    lock_key = key + ":lock"
    try:
        have_lock = bool(client.set(lock_key, token, nx=True, ex=LOCK_SECONDS))
        if not have_lock:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.02)
                cached = client.get(key)
                if cached is not None:
                    entry = json.loads(cached)
                    return entry["value"], CacheMeta("hit", entry["computed_at"])
                if not client.exists(lock_key):
                    have_lock = bool(client.set(lock_key, token, nx=True, ex=LOCK_SECONDS))
                    if have_lock:
                        # The holder may have stored the value just before releasing the lock.
                        cached = client.get(key)
                        if cached is not None:
                            client.eval(_RELEASE, 1, lock_key, token)
                            entry = json.loads(cached)
                            return entry["value"], CacheMeta("hit", entry["computed_at"])
                        break
    except redis.RedisError as exc:
        log.warning("cache unavailable org=%s: %s", org_id, exc)
        return compute(), CacheMeta("bypass", _now())

    computed_at = _now()
    try:
        value = compute()
        with contextlib.suppress(redis.RedisError):
            client.set(key, json.dumps({"value": value, "computed_at": computed_at}, default=str), ex=ttl)
    finally:
        # Released even when compute() raises, so the next identical request need not wait it out.
        if have_lock:
            try:
                client.eval(_RELEASE, 1, lock_key, token)
            except redis.RedisError as exc:
                log.warning("cache lock release failed org=%s: %s", org_id, exc)
    return value, CacheMeta("miss", computed_at)
