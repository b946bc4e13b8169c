"""Analytics cache: keys carry generation counters (analytics.generations), so invalidation is one
INCR per family.

A web process may also hold copies of generations and entries (a near cache, kept coherent by
Redis's invalidation messages), so that a hit costs no round trip at all.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from webapp.analytics import popular, read_time
from webapp.analytics.generations import GEN_PREFIX, gen_key, owed_bumps
from webapp.analytics.popular import Tally
from webapp.infra.near_cache import MISSING, NearView

log = logging.getLogger(__name__)

LOCK_SECONDS = 30
# The longest a near-cache copy is used without asking Redis again, whatever its messages say.
NEAR_MAX_AGE = 30.0
WAIT_SECONDS = 5.0
# Compare-and-delete: release the lock only if it still holds our token.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


ENTRY_PREFIX = "an:c:"
LOCK_PREFIX = "an:lock:"
# What a web process may copy in its near cache: generations and entries (never the locks).
NEAR_PREFIXES = (GEN_PREFIX, ENTRY_PREFIX)


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(
    org_id: int, families: Iterable[str], generations: Iterable[int | str], params: dict[str, Any]
) -> str:
    return _entry_key(org_id, families, generations, _digest(params))


def _digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(params).encode()).hexdigest()


def _entry_key(org_id: int, families: Iterable[str], generations: Iterable[int | str], digest: str) -> str:
    gens = ".".join(f"{f}{g}" for f, g in zip(families, generations, strict=True))
    return f"{ENTRY_PREFIX}{org_id}:{gens}:{digest}"


def lock_key(key: str) -> str:
    """The stampede lock of entry `key` (outside the entries' prefix: taking it invalidates no copy)."""
    return LOCK_PREFIX + key.removeprefix(ENTRY_PREFIX)


class RawJson(str):
    """The JSON text of a cached answer, passed on as it is: a hit is never parsed and re-encoded."""

    def load(self) -> Any:
        return json.loads(self)


@dataclass(frozen=True)
class Computed:
    """What a computation may return: the answer, and facts about it stored and returned with it."""

    value: Any
    about: dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheMeta:
    cache: str  # hit | miss | bypass
    computed_at: str
    about: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        return {"cache": self.cache, "computed_at": self.computed_at}


def _now() -> str:
    return datetime.now(UTC).isoformat()


# A stored entry is one line of JSON about the answer, a newline, then the answer's JSON (which
# json.dumps never breaks across lines), so that a hit parses only the short first line.
def encode_entry(body: str, computed_at: str, about: dict[str, Any]) -> bytes:
    return json.dumps({"computed_at": computed_at, "about": about}).encode() + b"\n" + body.encode()


def decode_entry(stored: bytes) -> tuple[RawJson, CacheMeta] | None:
    """The answer and its meta (cache "hit"); None for an entry in another format."""
    head, newline, body = stored.partition(b"\n")
    if not newline:
        return None
    header = json.loads(head)
    return RawJson(body.decode()), CacheMeta("hit", header["computed_at"], header["about"])


@dataclass(frozen=True)
class Shortcuts:
    """What a web process has for fast lookups: the request's view of the near cache, and the tally
    counting requests served from that view (both optional)."""

    near: NearView | None = None
    tally: Tally | None = None


# One round trip for a lookup: read the generations, build the key as cache_key() does, count the
# request in the popularity set (when asked), GET the entry and its remaining time to live, take the
# entry's stampede lock (lock_key()) when asked and the entry is missing (or always, for a forced
# refresh), and return the generations read (for a near cache). KEYS: generation keys; ARGV: key
# prefix, digest, popularity set, popularity member, lock prefix, lock token ('' : no lock), '1' to
# lock even over a stored entry, then the family names in KEYS' order. The set is trimmed and given
# its time to live as it is counted in (popular.upkeep).
_LOOKUP = (
    """
local gens = redis.call('MGET', unpack(KEYS))
local parts = {}
for i = 1, #KEYS do
  gens[i] = gens[i] or '0'
  parts[i] = ARGV[7 + i] .. gens[i]
end
local tail = table.concat(parts, '.') .. ':' .. ARGV[2]
local key = ARGV[1] .. tail
if ARGV[3] ~= '' then
  redis.call('ZINCRBY', ARGV[3], 1, ARGV[4])
  redis.call('ZREMRANGEBYRANK', ARGV[3], 0, -@KEEP@ - 1)
  redis.call('EXPIRE', ARGV[3], @TTL@)
end
local value = redis.call('GET', key)
local ttl = -2
if value then ttl = redis.call('PTTL', key) end
local locked = 0
if ARGV[6] ~= '' and (not value or ARGV[7] == '1') then
  if redis.call('SET', ARGV[5] .. tail, ARGV[6], 'NX', 'EX', @LOCK@) then locked = 1 end
end
return {key, value, ttl, gens, locked}
""".replace("@KEEP@", str(popular.KEEP))
    .replace("@TTL@", str(popular.TTL_SECONDS))
    .replace("@LOCK@", str(LOCK_SECONDS))
)
_LOOKUP_SHA = hashlib.sha1(_LOOKUP.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so

Found = tuple[RawJson, CacheMeta]


def _lookup(
    client: redis.Redis,
    org_id: int,
    names: list[str],
    params: dict[str, Any],
    count_in: tuple[str, str] | None,
    shortcuts: Shortcuts,
    lock: tuple[str, bool] | None = None,
) -> tuple[str, Found | None, bool | None]:
    """The entry's key, what it holds, and whether its stampede lock was taken: from the near cache
    when it has both the generations and the entry, otherwise in one round trip (which fills the near
    cache). With `lock` (a token, and whether to take it even over a stored entry: a forced refresh)
    that round trip also takes the entry's lock when the entry is missing: True or False then, None
    where the lock was not tried (the caller takes it itself)."""
    digest = _digest(params)
    gen_keys = [gen_key(org_id, f) for f in names]
    near = shortcuts.near
    if near is not None:
        gens = near.get_many(gen_keys)
        if gens is not None:
            key = _entry_key(org_id, names, gens, digest)
            found = near.get(key)
            if found is not MISSING:
                if count_in is not None and shortcuts.tally is not None:
                    _count_later(client, shortcuts, *count_in)
                return key, found, None
    zset, member = count_in or ("", "")
    have_lock: bool | None = None
    if gen_keys:
        token, force = lock or ("", False)
        args = (
            len(gen_keys),
            *gen_keys,
            f"{ENTRY_PREFIX}{org_id}:",
            digest,
            zset,
            member,
            f"{LOCK_PREFIX}{org_id}:",
            token,
            "1" if force else "0",
            *names,
        )
        try:
            raw_key, stored, ttl_ms, gens, locked = client.evalsha(_LOOKUP_SHA, *args)
        except redis.exceptions.NoScriptError:
            # EVAL loads the script for the next lookups.
            raw_key, stored, ttl_ms, gens, locked = client.eval(_LOOKUP, *args)
        key = raw_key.decode()
        if token:
            have_lock = bool(locked)
    else:
        # An answer that depends on no family has an empty generation list (EVAL needs a key to MGET).
        key = _entry_key(org_id, (), (), digest)
        pipe = client.pipeline(transaction=False)
        if zset:
            pipe.zincrby(zset, 1, member)
            for command in popular.upkeep(zset):
                pipe.execute_command(*command)
        pipe.get(key).pttl(key)
        *_, stored, ttl_ms = pipe.execute()
        gens = []
    found = None if stored is None else decode_entry(stored)
    if near is not None:
        near.put_many([(k, g.decode()) for k, g in zip(gen_keys, gens, strict=True)], ttl=NEAR_MAX_AGE)
        if found is not None and ttl_ms > 0:
            near.put(key, found, ttl=min(ttl_ms / 1000, NEAR_MAX_AGE), size=len(stored))
    return key, found, have_lock


def _count_later(client: redis.Redis, shortcuts: Shortcuts, zset: str, member: str) -> None:
    """Count a request served from the near cache; send the counts once they are due."""
    assert shortcuts.tally is not None
    due = shortcuts.tally.add(zset, member)
    if due:
        pipe = client.pipeline(transaction=False)
        for command in due:
            pipe.execute_command(*command)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("popularity counts lost: %s", exc)


def _answer(raw: RawJson, meta: CacheMeta, as_raw: bool) -> tuple[Any, CacheMeta]:
    return (raw if as_raw else raw.load()), meta


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
    raw: bool = False,
    shortcuts: Shortcuts | None = None,
    budget: read_time.Budget | None = None,
) -> tuple[Any, CacheMeta]:
    """The cached answer for `params`, or compute it once (others wait) and store it for `ttl` seconds.

    When Redis is unreachable the answer is computed and returned with cache "bypass".
    `force` recomputes and overwrites whatever is cached (background refresh). `count_in`, a
    (sorted set, member) pair, counts the request there in the same round trip as the lookup.
    `compute` may return a `Computed` to store facts about the answer (in the meta's `about`).
    With `raw` the answer is its JSON text (a `RawJson`). `shortcuts` make the lookup faster: a
    near-cache view, and the tally of hits served from it. With a `budget` (read_time.Budget), a
    computation is charged to the organization's read time, and refused (read_time.ReadTimeSpent)
    while that is spent; a hit never is.
    """
    names = sorted(set(families))
    if owed_bumps.covers(org_id, names) and not owed_bumps.pay(client):
        return _computed(compute, "bypass", raw)  # a change this process made is not in Redis yet
    token = uuid.uuid4().hex
    try:
        # A miss takes the entry's lock in the lookup's round trip.
        key, found, tried = _lookup(
            client, org_id, names, params, count_in, shortcuts or Shortcuts(), lock=(token, force)
        )
    except redis.RedisError as exc:
        log.warning("cache unavailable org=%s: %s", org_id, exc)
        return _computed(compute, "bypass", raw)
    if found is not None and not force:
        return _answer(*found, raw)

    lock = lock_key(key)
    try:
        have_lock = tried if tried is not None else bool(client.set(lock, token, nx=True, ex=LOCK_SECONDS))
        if not have_lock:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.02)
                found = _stored(client, key)
                if found is not None:
                    return _answer(*found, raw)
                if not client.exists(lock):
                    have_lock = bool(client.set(lock, token, nx=True, ex=LOCK_SECONDS))
                    if have_lock:
                        # The holder may have stored the value just before releasing the lock.
                        found = _stored(client, key)
                        if found is not None:
                            client.eval(_RELEASE, 1, lock, token)
                            return _answer(*found, raw)
                        break
    except redis.RedisError as exc:
        log.warning("cache unavailable org=%s: %s", org_id, exc)
        return _computed(compute, "bypass", raw)

    try:
        computation = read_time.begin(org_id, budget)
    except read_time.ReadTimeSpent:
        if have_lock:
            _release(client, org_id, lock, token)
        raise
    try:
        body, meta = _encoded(compute, "miss")
    except BaseException:
        # Released when compute() raises, so the next identical request need not wait it out.
        if have_lock:
            _release(client, org_id, lock, token)
        computation.charge(client)
        raise
    # The answer stored, the lock released and the computation charged in one round trip.
    pipe = client.pipeline(transaction=False)
    pipe.set(key, encode_entry(body, meta.computed_at, meta.about), ex=ttl)
    if have_lock:
        pipe.eval(_RELEASE, 1, lock, token)
    charge = computation.charge_into(pipe)
    try:
        replies = pipe.execute()
    except redis.RedisError as exc:
        log.warning("cache store or lock release failed org=%s: %s", org_id, exc)
    else:
        if charge is not None:
            charge.note(replies)
    return _answer(RawJson(body), meta, raw)


def _release(client: redis.Redis, org_id: int, lock: str, token: str) -> None:
    try:
        client.eval(_RELEASE, 1, lock, token)
    except redis.RedisError as exc:
        log.warning("cache lock release failed org=%s: %s", org_id, exc)


def _stored(client: redis.Redis, key: str) -> tuple[RawJson, CacheMeta] | None:
    stored = client.get(key)
    return None if stored is None else decode_entry(stored)


def encode_answer(value: Any) -> str:
    """`value` as compact JSON text, with NaN and infinities as null; instants in ISO 8601, sets as
    lists, numpy numbers as numbers, anything else orjson cannot write as its str().

    orjson writes a 13,000-row hourly aggregation (1.2 MB) in about 3 to 5 ms, against 13 ms for
    pydantic's encoder and 34 ms for the standard library's. An integer past 64 bits, which orjson
    refuses, sends the whole answer through the standard library (which writes NaN as NaN).
    """
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return str(value)


def _encoded(compute: Callable[[], Any], verdict: str) -> tuple[str, CacheMeta]:
    """Compute, and encode the answer once: the JSON text stored and returned."""
    computed_at = _now()
    with collection_paused():
        result = compute()
        if not isinstance(result, Computed):
            result = Computed(result)
        body = encode_answer(result.value)
        about = result.about
        # The answer's objects go (reference counting) before collections resume: resumed while they
        # lived, the next allocation made the collector walk all of them.
        del result
    return body, CacheMeta(verdict, computed_at, about)


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while an answer is built and encoded (reference counting still
    frees).

    An answer of thousands of cells allocates tens of thousands of dicts and tuples that live until
    it is encoded; the collector walked them over and over: half the Python time of a 90-day hourly
    aggregation by channel (54 of 112 ms of CPU, profiled at 1M tickets). Process-wide, so another
    thread's answer may be built meanwhile without collections too; they resume when either ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _computed(compute: Callable[[], Any], verdict: str, raw: bool) -> tuple[Any, CacheMeta]:
    body, meta = _encoded(compute, verdict)
    return _answer(RawJson(body), meta, raw)
