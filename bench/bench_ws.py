"""Ten thousand open WebSockets on this machine: what each costs, how fast an update reaches them all,
and what they cost REST.

gunicorn runs exactly as the Procfile's web line says (gunicorn.conf.py: 2 gevent workers) against
scratch PostgreSQL and Redis with --tickets seeded tickets; no Celery worker is needed. The clients are
bench/ws_swarm.py processes (--client-processes of them, asyncio, a few KiB per socket), each holding a
share of --sockets sockets of one organization; one more holds a single socket of a second organization.
In order:

1. REST cache-hit latency with no socket open: --concurrency threads, each with its own kept-alive
   connection, send --requests GETs of a cached 90-day series.
2. The sockets connect; the web workers' RSS before and after, over the sockets, is the memory one
   open socket costs.
3. They are held for --hold seconds, each sending `{"type": "ping"}` every 20 s and answering the
   server's pings. Meanwhile: the REST cache-hit run again (same load), and --jobs job_update events
   published to the second organization's stream (paced), timed from XADD to its one socket.
4. --tickets-created tickets created over REST, paced: each one's metric_update must reach every
   socket; the clock starts before the POST, so the latency includes the request itself (commit,
   rollup update, publish) as well as the fan-out.

Every socket must stay open and receive every update exactly once. Results: bench/results/ws.json.

    python -m bench.bench_ws [--sockets 10000] [--client-processes 2] [--hold 60] [--tickets-created 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import psutil

from bench.bench_http import hammer, series_path
from bench.common import ROOT, Stack, latency_summary, platform_stack, print_table, write_results

# The targets of the issue this benchmark shows.
TARGET_FANOUT_P50_MS = 250.0
TARGET_FANOUT_P99_MS = 1000.0
TARGET_JOB_P50_MS = 50.0
TARGET_REST_P99_RATIO = 2.0


class Swarm:
    """One ws_swarm child process and its JSON lines."""

    def __init__(self, stack: Stack, org_id: int, token: str, count: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ws_swarm",
                "--port",
                str(stack.port),
                "--org",
                str(org_id),
                "--count",
                str(count),
            ],
            cwd=ROOT,
            env={**os.environ, "BENCH_TOKEN": token},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a client process ended (code {self.proc.wait()}) before {event!r}")
        message = json.loads(line)
        assert message["event"] == event, message
        return message

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.tell("close")
            self.read("closed")
        self.proc.wait(30)


def web_workers(stack: Stack) -> list[psutil.Process]:
    """The gunicorn workers (the children of the web process started last)."""
    return psutil.Process(stack.processes[-1].pid).children()


def web_cpu(workers: list[psutil.Process]) -> float:
    """CPU seconds (user and system) the web workers have used."""
    return sum(sum(w.cpu_times()[:2]) for w in workers)


def rss_mib(workers: list[psutil.Process]) -> float:
    return sum(w.memory_info().rss for w in workers) / 2**20


def second_org(stack: Stack) -> tuple[int, str]:
    """Another organization with an admin and a token: the one whose single socket gets job_updates."""
    from sqlalchemy.orm import Session

    from webapp import config, create_app
    from webapp.models import Organization, User
    from webapp.security.tokens import access_token_for

    settings = config.load()
    settings.update(
        SQLALCHEMY_DATABASE_URL=stack.database_url,
        REDIS_URL=stack.redis_url,
        BROKER_URL=stack.redis_url,
        JWT_SECRET_KEY=stack.env["JWT_SECRET_KEY"],
        JWT_ACCESS_TOKEN_MINUTES=240,
        INSTANCE_PATH=stack.env["INSTANCE_PATH"],
    )
    app = create_app(settings)
    with app.app_context(), Session(app.extensions["db_engine"]) as session:
        org = Organization(name="Bench jobs", timezone="UTC")
        session.add(org)
        session.flush()
        user = User(org_id=org.id, email="jobs@bench.test", password_hash="-", role="admin")  # noqa: S106 (never signs in)
        session.add(user)
        session.commit()
        token = access_token_for(user)
        org_id = org.id
    app.extensions["db_engine"].dispose()
    return org_id, token


def publish_paced(stack: Stack, org_id: int, kind: str, phase: str, count: int, rate: float) -> None:
    """`count` events straight to the organization's stream, paced, each carrying its send time."""
    from webapp.live import events

    client = stack.redis
    due = time.perf_counter()
    for seq in range(count):
        due += 1 / rate
        data = {"bench_phase": phase, "bench_seq": seq, "sent_at": time.perf_counter()}
        if kind == "metric_update":
            data["metrics"] = []
        events.publish(client, org_id, kind, data)
        time.sleep(max(0.0, due - time.perf_counter()))


def create_tickets(stack: Stack, count: int, rate: float) -> dict[int, float]:
    """Tickets created over REST, paced: ticket id -> perf_counter() just before its request."""
    sent: dict[int, float] = {}
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    headers = {"Authorization": f"Bearer {stack.admin_token}", "Content-Type": "application/json"}
    for _ in range(count):
        started = time.perf_counter()
        conn.request("POST", "/api/v1/tickets", body=b"{}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"POST /api/v1/tickets answered {response.status}: {body[:200]!r}")
        sent[json.loads(body)["id"]] = started
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    conn.close()
    return sent


def rest_hits(stack: Stack, path: str, args: argparse.Namespace) -> dict[str, Any]:
    """The cache-hit series under --concurrency kept-alive clients: latencies in ms."""
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    out = hammer(stack.port, path, auth, threads=args.concurrency, requests=args.requests, expect=b'"hit"')
    return {**latency_summary(out["latencies"]), "requests_per_s": len(out["latencies"]) / out["seconds"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    budget = {"RATE_LIMIT_ANALYTICS_PER_MINUTE": str(10**9)}
    with platform_stack("bench_ws", seed_tickets=args.tickets, extra_env=budget) as stack:
        command = stack.start_web()
        path = series_path()
        auth = {"Authorization": f"Bearer {stack.admin_token}"}
        # The miss that fills the cache, then a warm-up of both workers.
        hammer(stack.port, path, auth, threads=1, requests=1, expect=b'"points"')
        hammer(stack.port, path, auth, threads=args.concurrency, requests=100, expect=b'"hit"')
        rest_idle = rest_hits(stack, path, args)
        print(
            f"REST cache hit, no socket open: p50 {rest_idle['p50_ms']:.2f} ms, p99 {rest_idle['p99_ms']:.2f}"
        )

        jobs_org, jobs_token = second_org(stack)
        workers = web_workers(stack)
        rss_before = rss_mib(workers)
        started = time.perf_counter()
        share = [args.sockets // args.client_processes] * args.client_processes
        share[0] += args.sockets - sum(share)
        swarms = [Swarm(stack, stack.org_id, stack.admin_token, n) for n in share]
        connected = [s.read("connected") for s in swarms]
        connect_s = time.perf_counter() - started
        opened = sum(c["count"] for c in connected)
        failures: Counter[str] = Counter()
        for c in connected:
            failures.update(c["failures"])
        lone = Swarm(stack, jobs_org, jobs_token, 1)
        lone_connected = lone.read("connected")
        time.sleep(2.0)  # what the connections started settles
        rss_after = rss_mib(workers)
        per_socket_kib = (rss_after - rss_before) * 1024 / max(1, opened)
        print(
            f"{opened} sockets open in {connect_s:.1f} s ({dict(failures) or 'no failures'}); web RSS"
            f" {rss_before:.0f} -> {rss_after:.0f} MiB, {per_socket_kib:.1f} KiB per socket",
            flush=True,
        )

        # The hold: REST and job updates while every socket pings. First ten quiet seconds: what
        # open sockets cost the web workers when nothing happens but their pings.
        idle_cpu = web_cpu(workers)
        time.sleep(10.0)
        idle_cpu_s = web_cpu(workers) - idle_cpu
        hold_started = time.monotonic() - 10.0
        job_thread = threading.Thread(
            target=publish_paced, args=(stack, jobs_org, "job_update", "job", args.jobs, 5.0), daemon=True
        )
        job_thread.start()
        rest_open = rest_hits(stack, path, args)
        job_thread.join()
        print(
            f"REST cache hit, {opened} open: p50 {rest_open['p50_ms']:.2f} ms, p99 {rest_open['p99_ms']:.2f}"
        )
        time.sleep(max(0.0, args.hold - (time.monotonic() - hold_started)))
        held_s = time.monotonic() - hold_started

        # The fan-out alone: events XADDed straight to the stream, each carrying its send time.
        clients = [psutil.Process(s.proc.pid) for s in swarms]
        cpu_before, client_cpu_before = web_cpu(workers), web_cpu(clients)
        publish_paced(stack, stack.org_id, "metric_update", "relay", args.tickets_created, args.rate)
        time.sleep(3.0)
        relay_cpu_s = web_cpu(workers) - cpu_before
        client_cpu_s = web_cpu(clients) - client_cpu_before
        rest_sent = create_tickets(stack, args.tickets_created, args.rate)
        time.sleep(3.0)  # the last receipts
        for swarm in [*swarms, lone]:
            swarm.tell("report")
        reports = [s.read("report") for s in swarms]
        lone_report = lone.read("report")
        for swarm in [*swarms, lone]:
            swarm.close()

    fanout = [
        (received - rest_sent[int(key.split(":")[1])]) * 1000
        for r in reports
        for key, times in r["receipts"].items()
        if key.startswith("rest:")
        for received in times
    ]
    expected = {f"rest:{t}" for t in rest_sent}
    missing = sum(len(expected - set(r["receipts"])) for r in reports)
    # Each socket counts once per event: a receipt list longer than the sockets means duplicates.
    receipts = sum(len(r["receipts"].get(key, [])) for r in reports for key in expected)
    duplicates = max(0, receipts - opened * len(expected))
    short = opened * len(expected) - receipts + duplicates
    job_ms = lone_report["relay_ms"].get("job", [])
    relay_ms = [ms for r in reports for ms in r["relay_ms"].get("relay", [])]
    relay_missing = opened * args.tickets_created - len(relay_ms)
    still_open = sum(r["open"] for r in reports)
    results = {
        f"metric_update after POST /tickets, to {opened} sockets": latency_summary(fanout or [0.0]),
        f"metric_update XADD to {opened} sockets": latency_summary(relay_ms or [0.0]),
        f"job_update XADD to its one socket, {opened} others open": latency_summary(job_ms or [0.0]),
        "REST cache hit, no socket open": rest_idle,
        f"REST cache hit, {opened} sockets open": rest_open,
    }
    fanout_row, job_row = results[next(iter(results))], list(results.values())[2]
    checks = {
        "fan-out p50 <= 250 ms": bool(fanout) and fanout_row["p50_ms"] <= TARGET_FANOUT_P50_MS,
        "fan-out p99 <= 1 s": bool(fanout) and fanout_row["p99_ms"] <= TARGET_FANOUT_P99_MS,
        "job_update p50 <= 50 ms": bool(job_ms) and job_row["p50_ms"] <= TARGET_JOB_P50_MS,
        "REST hit p99 open / idle <= 2": rest_open["p99_ms"] / rest_idle["p99_ms"] <= TARGET_REST_P99_RATIO,
        "every socket held and served": still_open == opened == args.sockets
        and not (missing or short or relay_missing),
    }
    return {
        "sockets": args.sockets,
        "opened": opened,
        "client_processes": args.client_processes,
        "connect_seconds": connect_s,
        "connect_failures": dict(failures),
        "lone_socket_connected": lone_connected["count"],
        "held_seconds": held_s,
        "still_open": still_open,
        "close_codes": {code: n for r in reports for code, n in r["close_codes"].items()},
        "pongs": sum(r["pongs"] for r in reports),
        "server_pings_answered": sum(r["server_pings"] for r in reports),
        "web_workers": len(workers),
        "web_rss_mib_before": rss_before,
        "web_rss_mib_after": rss_after,
        "rss_kib_per_socket": per_socket_kib,
        "web_idle_cpu_percent": idle_cpu_s * 10,
        # Over the receipts that arrived in the phase (all of them, unless the machine fell behind).
        "web_cpu_us_per_delivery": relay_cpu_s * 1e6 / max(1, len(relay_ms)),
        "client_cpu_us_per_receipt": client_cpu_s * 1e6 / max(1, len(relay_ms)),
        "tickets_created": len(rest_sent),
        "missing_events": missing,
        "missing_relay_receipts": relay_missing,
        "short_receipts": short,
        "duplicate_receipts": duplicates,
        "web_command": command,
        "results": results,
        "rest_p99_ratio": rest_open["p99_ms"] / rest_idle["p99_ms"],
        "checks": checks,
        "passed": all(checks.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=10_000, help="sockets of one organization")
    parser.add_argument("--client-processes", type=int, default=2, help="processes holding them")
    parser.add_argument(
        "--hold", type=float, default=60.0, help="seconds the sockets are held before the updates"
    )
    parser.add_argument(
        "--tickets", type=int, default=10_000, help="tickets seeded (the cached series reads them)"
    )
    parser.add_argument("--tickets-created", type=int, default=20, help="tickets created over REST")
    parser.add_argument("--rate", type=float, default=1.0, help="tickets created per second")
    parser.add_argument("--jobs", type=int, default=100, help="job_update events to the lone socket")
    parser.add_argument("--concurrency", type=int, default=4, help="REST client threads")
    parser.add_argument("--requests", type=int, default=1000, help="REST requests per thread and run")
    args = parser.parse_args()

    out = run(args)
    rows = [
        [name, r["n"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]]
        for name, r in out["results"].items()
    ]
    print_table(
        f"{out['opened']} sockets on {out['web_workers']} gevent workers,"
        f" held {out['held_seconds']:.0f} s (ms)",
        ["what", "n", "p50", "p90", "p99", "max"],
        rows,
    )
    print(
        f"\nconnect {out['connect_seconds']:.1f} s; still open {out['still_open']}; pongs {out['pongs']};"
        f" server pings answered {out['server_pings_answered']}; close codes {out['close_codes']}"
        f"\nmemory: web RSS {out['web_rss_mib_before']:.0f} -> {out['web_rss_mib_after']:.0f} MiB,"
        f" {out['rss_kib_per_socket']:.1f} KiB per open socket"
        f"\nweb CPU while the sockets only ping: {out['web_idle_cpu_percent']:.1f} % of one core"
        f"\nCPU per delivered event (XADD phase): web {out['web_cpu_us_per_delivery']:.1f} us,"
        f" clients {out['client_cpu_us_per_receipt']:.1f} us"
        f"\nmissing events {out['missing_events']}, short receipts {out['short_receipts']},"
        f" duplicates {out['duplicate_receipts']}; REST p99 open/idle {out['rest_p99_ratio']:.2f}"
    )
    for name, ok in out["checks"].items():
        print(f"  {'pass' if ok else 'FAIL'}  {name}")
    path = write_results("ws", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
