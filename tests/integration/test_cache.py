"""The analytics cache against real Redis: read-through, generations, stampede lock, degradation."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis

from webapp.analytics import cache, generations

_orgs = itertools.count(900_000)


@pytest.fixture
def client(services):
    return redis.Redis.from_url(services.redis_url, socket_timeout=1)


@pytest.fixture
def org_id() -> int:
    return next(_orgs)


class Counter:
    def __init__(self, value=None, delay: float = 0.0) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.value if self.value is not None else {"n": self.calls}


def test_miss_then_hit(client, org_id):
    compute = Counter({"answer": 42})
    first, meta1 = cache.read_through(client, org_id, ["volume"], {"q": 1}, compute, ttl=60)
    second, meta2 = cache.read_through(client, org_id, ["volume"], {"q": 1}, compute, ttl=60)
    assert first == second == {"answer": 42}
    assert (meta1.cache, meta2.cache) == ("miss", "hit")
    assert meta2.computed_at == meta1.computed_at
    assert compute.calls == 1
    assert 0 < client.ttl(cache.cache_key(org_id, ["volume"], [0], {"q": 1})) <= 60


def test_parameter_order_does_not_matter(client, org_id):
    compute = Counter()
    cache.read_through(client, org_id, ["volume"], {"a": 1, "b": [1, 2]}, compute, ttl=60)
    _, meta = cache.read_through(client, org_id, ["volume"], {"b": [1, 2], "a": 1}, compute, ttl=60)
    assert meta.cache == "hit"
    assert compute.calls == 1


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("created", {"volume", "sentiment", "dashboard", "backlog", *generations.DISTRIBUTIONS}),
        ("status_changed", {"dist_status", "resolution", "backlog"}),
        ("priority_changed", {"dist_priority", "sla"}),
        ("assigned", {"dist_assigned_to"}),
        ("first_response", {"response", "performance", "sla"}),
        ("resolved", {"resolution", "performance", "sla", "backlog"}),
        ("reopened", {"resolution", "performance", "sla", "backlog", "solves"}),
        ("backlog", {"backlog"}),
        ("solved", {"solves"}),
        ("next_reply", {"replies", "sla", "performance"}),
        ("rated", {"satisfaction"}),
    ],
)
def test_each_event_invalidates_exactly_its_families(client, org_id, event_type, expected):
    computes = {family: Counter() for family in generations.FAMILIES}
    for family in generations.FAMILIES:
        cache.read_through(client, org_id, [family], {"f": family}, computes[family], ttl=60)
    generations.bump(client, org_id, generations.families_for([event_type]))
    invalidated = set()
    for family in generations.FAMILIES:
        _, meta = cache.read_through(client, org_id, [family], {"f": family}, computes[family], ttl=60)
        if meta.cache == "miss":
            invalidated.add(family)
    assert invalidated == expected


def _command_calls(client) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def test_invalidation_is_one_incr_per_family_whatever_is_cached(client, org_id):
    for i in range(500):
        cache.read_through(client, org_id, ["volume"], {"i": i}, Counter(), ttl=60)
    before = _command_calls(client)
    generations.bump_all(client, org_id)
    after = _command_calls(client)
    changed = {
        name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)
    }
    assert changed.get("incrby") == len(generations.FAMILIES)
    assert not {"keys", "scan", "del", "unlink"} & set(changed)
    _, meta = cache.read_through(client, org_id, ["volume"], {"i": 1}, Counter(), ttl=60)
    assert meta.cache == "miss"


def test_concurrent_misses_compute_once(client, org_id):
    compute = Counter({"v": 1}, delay=0.3)
    results = []
    barrier = threading.Barrier(50)

    def read():
        barrier.wait()
        results.append(cache.read_through(client, org_id, ["volume"], {"same": True}, compute, ttl=60))

    threads = [threading.Thread(target=read) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert compute.calls == 1
    assert len(results) == 50
    assert all(value == {"v": 1} for value, _ in results)
    assert sorted(meta.cache for _, meta in results).count("miss") == 1


def test_a_miss_makes_two_round_trips_its_lock_taken_by_the_lookup(client, org_id, monkeypatch):
    # The lookup (generations, entry, and on a miss the entry's lock), then the store with the
    # lock's release: no round trip of its own for the lock.
    # Once before counting: the lookup's script is loaded (a fresh Redis answers its EVALSHA NOSCRIPT).
    cache.read_through(client, org_id, ["volume"], {"trips": 0}, Counter(), ttl=60)
    trips: list[str] = []
    single, pipelined = redis.Redis.execute_command, redis.client.Pipeline.execute

    def one(self, *args, **kwargs):
        trips.append(str(args[0]))
        return single(self, *args, **kwargs)

    def many(self, *args, **kwargs):
        trips.append("pipeline")
        return pipelined(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", one)
    monkeypatch.setattr(redis.client.Pipeline, "execute", many)
    _, meta = cache.read_through(client, org_id, ["volume"], {"trips": 1}, Counter(), ttl=60)
    assert meta.cache == "miss"
    assert trips == ["EVALSHA", "pipeline"]
    key = cache.cache_key(org_id, ["volume"], [0], {"trips": 1})
    assert client.get(cache.lock_key(key)) is None  # released with the store
    trips.clear()
    _, meta = cache.read_through(client, org_id, ["volume"], {"trips": 1}, Counter(), ttl=60)
    assert meta.cache == "hit"
    assert trips == ["EVALSHA"]


def test_a_held_lock_found_by_the_lookup_makes_the_reader_wait_for_the_answer(client, org_id):
    key = cache.cache_key(org_id, ["volume"], [0], {"held": 1})
    client.set(cache.lock_key(key), "another-process", ex=5)
    compute = Counter({"mine": True})

    def holder_stores() -> None:
        time.sleep(0.2)
        client.set(key, cache.encode_entry('{"theirs": true}', cache._now(), {}), ex=60)
        client.delete(cache.lock_key(key))

    threading.Thread(target=holder_stores).start()
    value, meta = cache.read_through(client, org_id, ["volume"], {"held": 1}, compute, ttl=60)
    assert value == {"theirs": True}
    assert compute.calls == 0
    assert meta.cache == "hit"


def test_lock_is_released_only_by_its_holder(client, org_id):
    compute = Counter()
    cache.read_through(client, org_id, ["volume"], {"x": 1}, compute, ttl=60)
    key = cache.cache_key(org_id, ["volume"], [0], {"x": 1})
    assert client.get(cache.lock_key(key)) is None


def test_force_recomputes(client, org_id):
    compute = Counter()
    cache.read_through(client, org_id, ["volume"], {"x": 1}, compute, ttl=60)
    value, meta = cache.read_through(client, org_id, ["volume"], {"x": 1}, compute, ttl=60, force=True)
    assert meta.cache == "miss"
    assert value == {"n": 2}
    assert cache.read_through(client, org_id, ["volume"], {"x": 1}, compute, ttl=60)[0] == {"n": 2}


def test_unreachable_redis_computes_directly(org_id):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    compute = Counter({"v": 7})
    value, meta = cache.read_through(dead, org_id, ["volume"], {"x": 1}, compute, ttl=60)
    assert value == {"v": 7}
    assert meta.cache == "bypass"


def test_failed_computation_releases_the_lock(client, org_id):
    def broken():
        raise RuntimeError("query failed")

    with pytest.raises(RuntimeError):
        cache.read_through(client, org_id, ["volume"], {"x": 1}, broken, ttl=60)
    started = time.monotonic()
    value, meta = cache.read_through(client, org_id, ["volume"], {"x": 1}, Counter({"ok": True}), ttl=60)
    assert value == {"ok": True}
    assert meta.cache == "miss"
    assert time.monotonic() - started < 1.0


def test_lookups_survive_a_script_flush(client, org_id):
    compute = Counter({"v": 1})
    cache.read_through(client, org_id, ["volume"], {"s": 1}, compute, ttl=60)
    client.script_flush()  # as after a Redis restart: the lookup script is gone
    value, meta = cache.read_through(client, org_id, ["volume"], {"s": 1}, compute, ttl=60)
    assert (value, meta.cache) == ({"v": 1}, "hit")
    assert compute.calls == 1
    _, meta = cache.read_through(client, org_id, ["volume"], {"s": 1}, compute, ttl=60)
    assert meta.cache == "hit"
