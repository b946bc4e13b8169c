"""Cache-hit latency over HTTP against a constant-JSON endpoint of the same server, at concurrency 8.

gunicorn runs exactly as the Procfile's web line says, against scratch PostgreSQL and Redis with an
organization of --tickets seeded tickets and its rollups built. One analytics time series is asked
once (the miss that fills the cache), then each of --concurrency client threads, every one with its
own persistent HTTP/1.1 connection (http.client), sends --requests requests to the cached series and
to GET /api/v1/ping in alternating rounds, so drift on a shared machine hits both alike. Every answer
is checked (200, and "cache": "hit" for the series). Results: bench/results/http.json.

    python -m bench.bench_http [--tickets 100000] [--concurrency 8] [--requests 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Flask

from bench.common import Stack, latency_summary, platform_stack, print_table, write_results

PING = "/api/v1/ping"
TZ = ZoneInfo("Europe/Berlin")
TARGET_RATIO = 2.0


def app_with_ping() -> Flask:
    """create_app() plus GET /api/v1/ping, while webapp/api/__init__.py does not register it."""
    from webapp import create_app
    from webapp.api import ping

    app = create_app()
    if not any(rule.rule == PING for rule in app.url_map.iter_rules()):
        app.register_blueprint(ping.bp, url_prefix="/api/v1")
    return app


def series_path() -> str:
    """A 90-day daily ticket_count series ending tomorrow (local), fixed for the run so every request hits."""
    end = datetime.now(UTC).astimezone(TZ).date() + timedelta(days=1)
    query = {"granularity": "daily", "start": (end - timedelta(days=90)).isoformat(), "end": end.isoformat()}
    return f"/api/v1/analytics/time-series/ticket_count?{urlencode(query)}"


def get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET on a kept-alive connection: the status and body."""
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def hammer(
    port: int, path: str, headers: dict[str, str], *, threads: int, requests: int, expect: bytes
) -> dict[str, Any]:
    """`threads` clients each send `requests` GETs of `path` back to back; every latency in ms."""
    barrier = threading.Barrier(threads + 1)
    samples: list[list[float]] = [[] for _ in range(threads)]
    failures: list[str] = []

    def client(mine: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            get(conn, path, headers)  # opens the connection outside the timed part
            barrier.wait()
            for _ in range(requests):
                started = time.perf_counter()
                status, body = get(conn, path, headers)
                mine.append((time.perf_counter() - started) * 1000)
                if status != 200 or expect not in body:
                    failures.append(f"{status} {body[:200]!r}")
                    return
        except Exception as exc:
            failures.append(repr(exc))
            barrier.abort()
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(samples[i],), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} bad answers from {path}, first: {failures[0]}")
    flat = [s for mine in samples for s in mine]
    return {"latencies": flat, "seconds": elapsed}


def serve(stack: Stack) -> tuple[list[str], bool]:
    """Start gunicorn as the Procfile does; if the app lacks /api/v1/ping, again with it added."""
    args = stack.start_web()
    # The port opens before the workers have built the app, which took over 10 s on a loaded guest.
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=120)
    status, _ = get(conn, PING, {})
    conn.close()
    if status == 200:
        return args, False
    print("GET /api/v1/ping is not registered (webapp/api/__init__.py): serving app_with_ping()", flush=True)
    stack.stop_processes()
    return stack.start_web(app="bench.bench_http:app_with_ping()"), True


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, serve, warm the series, and time both endpoints in alternating rounds."""
    # The budget still counts every request (its INCR is part of the hit path); it just never runs out.
    budget = {"RATE_LIMIT_ANALYTICS_PER_MINUTE": str(10**9)}
    with platform_stack("bench_http", seed_tickets=args.tickets, extra_env=budget) as stack:
        command, shimmed = serve(stack)
        auth = {"Authorization": f"Bearer {stack.admin_token}"}
        path = series_path()
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        started = time.perf_counter()
        status, body = get(conn, path, auth)
        miss_ms = (time.perf_counter() - started) * 1000
        assert status == 200, body[:300]
        first = json.loads(body)
        status, body = get(conn, path, auth)
        conn.close()
        assert json.loads(body)["meta"]["cache"] == "hit", body[:300]
        endpoints = {
            "constant (ping)": (PING, {}, b'"pong":true'),
            "cache hit": (path, auth, b'"cache":"hit"'),
        }
        # One unmeasured round each: imports, pools and connections of both gunicorn workers are warm.
        for url, headers, expect in endpoints.values():
            hammer(stack.port, url, headers, threads=args.concurrency, requests=50, expect=expect)
        samples: dict[str, list[float]] = {name: [] for name in endpoints}
        seconds: dict[str, float] = dict.fromkeys(endpoints, 0.0)
        for _ in range(args.rounds):
            for name, (url, headers, expect) in endpoints.items():
                out = hammer(
                    stack.port, url, headers, threads=args.concurrency, requests=args.requests, expect=expect
                )
                samples[name] += out["latencies"]
                seconds[name] += out["seconds"]
    results = {
        name: {**latency_summary(values), "requests_per_s": len(values) / seconds[name]}
        for name, values in samples.items()
    }
    ratio = results["cache hit"]["p50_ms"] / results["constant (ping)"]["p50_ms"]
    return {
        "tickets": args.tickets,
        "concurrency": args.concurrency,
        "requests_per_round": args.requests * args.concurrency,
        "rounds": args.rounds,
        "web_command": command,
        "ping_added_by_bench": shimmed,
        "series": path,
        "series_points": len(first["points"]),
        "miss_ms": miss_ms,
        "results": results,
        "p50_ratio": ratio,
        "p99_ratio": results["cache hit"]["p99_ms"] / results["constant (ping)"]["p99_ms"],
        "target_p50_ratio": TARGET_RATIO,
        "passed": ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=100_000, help="seeded tickets (default 100,000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--requests", type=int, default=500, help="requests per thread per round")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per endpoint")
    args = parser.parse_args()

    out = run(args)
    rows = [
        [name, r["n"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"], r["requests_per_s"]]
        for name, r in out["results"].items()
    ]
    print_table(
        f"HTTP GET at concurrency {args.concurrency}, persistent connections (ms)",
        ["endpoint", "requests", "p50", "p90", "p99", "max", "req/s"],
        rows,
    )
    verdict = "pass" if out["passed"] else "MISS"
    print(
        f"\ncache-hit p50 / constant p50 = {out['p50_ratio']:.2f} (target <= {TARGET_RATIO}: {verdict});"
        f" p99 ratio {out['p99_ratio']:.2f}; the miss that filled the cache took {out['miss_ms']:.1f} ms"
    )
    path = write_results("http", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
