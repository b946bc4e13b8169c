"""Invalidation cost with 10, 10,000 and 1,000,000 cached keys: generation INCR against pattern delete."""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from bench.common import print_table, scratch_redis, write_results
from webapp.analytics import cache, generations

SIZES = (10, 10_000, 1_000_000)
REPEATS = 5


def fill(client: redis.Redis, org_id: int, n: int) -> None:
    """`n` cached answers of one organization, shaped like the real keys."""
    gens = [int(g or 0) for g in client.mget([generations.gen_key(org_id, f) for f in generations.FAMILIES])]
    value = b'{"value": {"points": []}, "computed_at": "2026-01-01T00:00:00+00:00"}'
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(cache.cache_key(org_id, generations.FAMILIES, gens, {"i": i}), value, ex=3600)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def pattern_delete(client: redis.Redis, org_id: int) -> int:
    """The baseline: find the organization's keys by pattern and delete them."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{cache.ENTRY_PREFIX}{org_id}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def measure(client: redis.Redis, sizes: tuple[int, ...]) -> list[dict[str, float]]:
    rows = []
    for n in sizes:
        org_id = 10_000_000 + n
        client.flushdb()
        fill(client, org_id, n)
        bumps = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            generations.bump_all(client, org_id)
            bumps.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        deleted = pattern_delete(client, org_id)
        pattern_ms = (time.perf_counter() - started) * 1000
        rows.append(
            {
                "cached_keys": n,
                "generation_bump_ms": statistics.median(bumps),
                "pattern_delete_ms": pattern_ms,
                "pattern_deleted": deleted,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    server = scratch_redis()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=60)
        rows = measure(client, tuple(args.sizes))
    finally:
        server.stop()
    print_table(
        "Cache invalidation: one INCR per family vs SCAN + UNLINK of matching keys",
        ["cached keys", "generation bump ms", "pattern delete ms"],
        [[r["cached_keys"], r["generation_bump_ms"], r["pattern_delete_ms"]] for r in rows],
    )
    smallest, largest = rows[0], rows[-1]
    summary = {
        "bump_growth": largest["generation_bump_ms"] / smallest["generation_bump_ms"],
        "pattern_growth": largest["pattern_delete_ms"] / smallest["pattern_delete_ms"],
    }
    print(
        f"growth from {smallest['cached_keys']:,} to {largest['cached_keys']:,} keys: "
        f"bump x{summary['bump_growth']:.1f}, pattern delete x{summary['pattern_growth']:.0f}"
    )
    path = write_results("cache_invalidation", {"rows": rows, "summary": summary})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
