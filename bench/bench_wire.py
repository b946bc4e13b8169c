"""The hot path's Redis round trip: a bare socket against redis-py, and what it is worth to a cache hit.

Part 1, in one process against a scratch Redis: the round trips of a cache hit whose web process holds
nothing: the token checks (GET of the token's revocation mark), the cache lookup (EVALSHA of the
lookup script, a 90-point answer in reply) and both in one round trip (as when the token checks
rode along with the lookup). Each over a bare blocking socket with hiredis packing and parsing (the
least a client can do; the hand-written wire the hot path used before it moved to redis-py) and
over a redis-py pipeline with its hiredis parser, as the application sends them, from 1 and from 8
threads: wall time per round trip (p50, p99) and CPU per round trip.

Part 2, over HTTP: gunicorn as the Procfile runs it, one cached 90-day series asked by 8 client
threads with the near cache on and off; the cache-hit p50 and p99, and the round trips a hit makes
(Redis's count of reads it processed, INFO total_reads_processed, per request).

The verdict: what a bare socket would save a hit = its round trips times the saving per round trip at
8 threads (the larger of wall and CPU), against the hit's p50. Results: bench/results/wire.json.

    python -m bench.bench_wire [--round-trips 3000] [--tickets 20000] [--requests 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis

from bench.bench_http import PING, get, hammer, series_path, serve
from bench.common import latency_summary, platform_stack, print_table, scratch_redis, write_results
from webapp.analytics import cache, generations
from webapp.infra.redis_client import make_redis

Command = Sequence[str | bytes | int]
THREADS = (1, 8)
ROUNDS = 5


class BareSocket:
    """One blocking TCP socket and a hiredis reader: a round trip with nothing else around it."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        self.sock.sendall(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.reader.gets()
            if reply is False:
                self.reader.feed(self.sock.recv(65536))
            else:
                replies.append(reply)
        return replies


def pipeline(client: redis.Redis) -> Callable[[Sequence[Command]], list[Any]]:
    """A round trip through a redis-py pipeline, as the application sends one."""

    def send(commands: Sequence[Command]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    return send


def hot_path_commands(client: redis.Redis) -> dict[str, list[Command]]:
    """The commands of a hit with nothing held locally, against keys shaped like the real ones."""
    org_id, family = 1, "volume"
    jti = os.urandom(16).hex()
    client.set(f"an:revoked:{jti}", b"0", ex=3600)
    gen = generations.gen_key(org_id, family)
    client.set(gen, 7)
    params = {"route": "time_series", "metric": "ticket_count", "granularity": "daily"}
    point = '{"bucket":"2026-01-01T00:00:00+01:00","value":12,"count":12,"min":null,"max":null}'
    body = '{"points":[' + ",".join([point] * 90) + '],"summary":{"total_count":1080}}'
    key = cache.cache_key(org_id, [family], [7], params)
    client.set(key, cache.encode_entry(body, "2026-01-01T00:00:00+00:00", {}), ex=3600)
    client.script_load(cache._LOOKUP)
    digest = key.rsplit(":", 1)[1]
    lookup: Command = (
        "EVALSHA",
        cache._LOOKUP_SHA,
        1,
        gen,
        f"{cache.ENTRY_PREFIX}{org_id}:",
        digest,
        f"an:pop:{org_id}",
        "member",
        family,
    )
    token: Command = ("GET", f"an:revoked:{jti}")
    return {"token checks": [token], "cache lookup": [lookup], "both in one": [token, lookup]}


def time_round_trips(
    make: Callable[[], Callable[[Sequence[Command]], list[Any]]],
    commands: list[Command],
    *,
    threads: int,
    count: int,
) -> tuple[list[float], float]:
    """`threads` threads each make `count` round trips of `commands`: every wall time (us), and the
    process's CPU seconds meanwhile."""
    barrier = threading.Barrier(threads + 1)
    samples: list[list[float]] = [[] for _ in range(threads)]

    def work(mine: list[float]) -> None:
        send = make()
        send(commands)  # connects outside the timed part
        barrier.wait()
        for _ in range(count):
            started = time.perf_counter()
            send(commands)
            mine.append((time.perf_counter() - started) * 1e6)

    workers = [threading.Thread(target=work, args=(samples[i],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    cpu = time.process_time()
    for worker in workers:
        worker.join()
    return [s for mine in samples for s in mine], time.process_time() - cpu


def round_trip_costs(count: int) -> list[dict[str, Any]]:
    """Part 1: every round trip of the hot path, over both clients, from 1 and 8 threads.

    The two clients take turns in ROUNDS rounds, so that drift on a shared machine hits both alike.
    """
    server = scratch_redis("bench_wire")
    try:
        host, port = "127.0.0.1", server.port
        setup = redis.Redis(host=host, port=port)
        setup.flushdb()
        shapes = hot_path_commands(setup)
        # The application's client, with its timeouts and health checks; one pool shared by all threads.
        shared = make_redis(server.url)
        clients: dict[str, Callable[[], Callable[[Sequence[Command]], list[Any]]]] = {
            "bare socket": lambda: BareSocket(host, port).round_trip,
            "redis-py": lambda: pipeline(shared),
        }
        rows = []
        for name, commands in shapes.items():
            for threads in THREADS:
                walls: dict[str, list[float]] = {client: [] for client in clients}
                cpus = dict.fromkeys(clients, 0.0)
                for _ in range(ROUNDS):
                    for client, make in clients.items():
                        per_thread = count // threads // ROUNDS
                        wall, cpu = time_round_trips(make, commands, threads=threads, count=per_thread)
                        walls[client] += wall
                        cpus[client] += cpu
                for client in clients:
                    ordered = sorted(walls[client])
                    rows.append(
                        {
                            "round trip": name,
                            "threads": threads,
                            "client": client,
                            "p50_us": statistics.median(ordered),
                            "p99_us": ordered[int(len(ordered) * 0.99)],
                            "cpu_us": cpus[client] * 1e6 / len(ordered),
                        }
                    )
        return rows
    finally:
        server.stop()


def reads_processed(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


def http_hits(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 2: the cache hit over HTTP with the near cache on and off: latency and round trips per hit."""
    rows = []
    budget = {"RATE_LIMIT_ANALYTICS_PER_MINUTE": str(10**9)}
    with platform_stack("bench_wire", seed_tickets=args.tickets, extra_env=budget) as stack:
        path = series_path()
        auth = {"Authorization": f"Bearer {stack.admin_token}"}
        client = stack.redis
        for near, max_bytes in (("on", str(64 * 1024 * 1024)), ("off", "0")):
            stack.env["NEAR_CACHE_MAX_BYTES"] = max_bytes
            stack.stop_processes()
            serve(stack)
            conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
            for _ in range(2):  # the miss (or a hit of the last run), then a hit
                status, body = get(conn, path, auth)
                assert status == 200, body[:300]
            conn.close()
            endpoints = {
                "constant (ping)": (PING, {}, b'"pong":true'),
                "cache hit": (path, auth, b'"cache":"hit"'),
            }
            for url, headers, expect in endpoints.values():
                hammer(stack.port, url, headers, threads=args.concurrency, requests=50, expect=expect)
            samples: dict[str, list[float]] = {name: [] for name in endpoints}
            hits = reads = 0
            for _ in range(args.rounds):
                for name, (url, headers, expect) in endpoints.items():
                    before = reads_processed(client)
                    out = hammer(
                        stack.port,
                        url,
                        headers,
                        threads=args.concurrency,
                        requests=args.requests,
                        expect=expect,
                    )
                    if name == "cache hit":
                        # Less the INFO commands that count (one read each, the second one's own).
                        reads += reads_processed(client) - before - 1
                        hits += len(out["latencies"])
                    samples[name] += out["latencies"]
            ping, hit = latency_summary(samples["constant (ping)"]), latency_summary(samples["cache hit"])
            rows.append(
                {
                    "near cache": near,
                    "ping_p50_ms": ping["p50_ms"],
                    "hit_p50_ms": hit["p50_ms"],
                    "hit_p99_ms": hit["p99_ms"],
                    "p50_ratio": hit["p50_ms"] / ping["p50_ms"],
                    "round_trips_per_hit": max(0, reads) / hits,
                    "hits": hits,
                }
            )
    return rows


def verdict(costs: list[dict[str, Any]], hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a bare socket would save each hit, with the near cache on and off, against its p50."""

    def at8(client: str, shape: str, field: str) -> float:
        (row,) = [
            r for r in costs if r["client"] == client and r["threads"] == 8 and r["round trip"] == shape
        ]
        return float(row[field])

    # The largest saving measured, so that the verdict leans towards the bare socket.
    saving_us = max(
        at8("redis-py", shape, field) - at8("bare socket", shape, field)
        for shape in ("token checks", "cache lookup")
        for field in ("p50_us", "cpu_us")
    )
    out = []
    for row in hits:
        saved_ms = row["round_trips_per_hit"] * saving_us / 1000
        share = saved_ms / row["hit_p50_ms"]
        out.append(
            {
                "near cache": row["near cache"],
                "round_trips_per_hit": row["round_trips_per_hit"],
                "saving_per_round_trip_us": saving_us,
                "saving_per_hit_ms": saved_ms,
                "share_of_hit_p50": share,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--round-trips", type=int, default=3000, help="round trips per client and shape")
    parser.add_argument("--tickets", type=int, default=20_000, help="seeded tickets (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP client threads (default 8)")
    parser.add_argument("--requests", type=int, default=400, help="HTTP requests per thread per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating HTTP rounds per endpoint")
    args = parser.parse_args()

    costs = round_trip_costs(args.round_trips)
    print_table(
        "Part 1: one round trip of the hot path, in process (us)",
        ["round trip", "threads", "client", "p50", "p99", "CPU"],
        [[r["round trip"], r["threads"], r["client"], r["p50_us"], r["p99_us"], r["cpu_us"]] for r in costs],
    )
    hits = http_hits(args)
    print_table(
        f"Part 2: cache hit over HTTP at concurrency {args.concurrency} (ms)",
        ["near cache", "ping p50", "hit p50", "hit p99", "p50 ratio", "round trips per hit"],
        [
            [r[k] for k in ("near cache", "ping_p50_ms", "hit_p50_ms", "hit_p99_ms", "p50_ratio")]
            + [r["round_trips_per_hit"]]
            for r in hits
        ],
    )
    judged = verdict(costs, hits)
    print_table(
        "What a bare socket would save a hit, at most",
        [
            "near cache",
            "round trips per hit",
            "saving per round trip us",
            "saving per hit ms",
            "share",
        ],
        [
            [
                v["near cache"],
                v["round_trips_per_hit"],
                v["saving_per_round_trip_us"],
                v["saving_per_hit_ms"],
                f"{v['share_of_hit_p50']:.1%}",
            ]
            for v in judged
        ],
    )
    path = write_results("wire", {"round_trips": costs, "http": hits, "verdict": judged})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
