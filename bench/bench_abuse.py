"""Abuse: a normal client keeps its latency while a hostile client of another organization runs every
attack at its worst allowed size, and every refused attack is answered at once.

gunicorn (the Procfile's web line) and one Celery worker (the Procfile's worker line, 2 slots) run
against scratch PostgreSQL and Redis, with JOB_MAX_RUNNING_PER_ORG=1 (one slot per organization of
the two). Both organizations hold --tickets seeded tickets. The normal client (an admin of the first)
asks for a cached daily series over 90 days, one request after another, and in another thread runs
small jobs (POST /analytics/refresh-cache, waited for on the WebSocket) at most five a second. After
--warmup seconds not counted (fresh processes' first jobs and reads), first for --idle seconds with
nothing else running, then for --attack seconds while the hostile organization
(a client process of its own at the lowest CPU priority, as an outside attacker's client runs
elsewhere) runs each attack from a thread of its own, one request after another:

- a 4 MiB `[{},{},...]` body at POST /auth/login (413), and wrong passwords (401, then 429);
- the outside client's aggregation (all metrics, two group-bys, hourly over 4,166 hours, 20
  percentiles: 400) and exact aggregations over 1900-2199 (400);
- the largest aggregation jobs allowed: exact, all metrics by channel, daily over 365 days (202 up
  to the cap of active aggregations, then 429), and ticket exports (202 up to the export cap, 429);
- a series read with a new range each time (a cache miss and a popularity count every time);
- a WebSocket sending subscribe as fast as it can (answered with errors past its budget);
- a swarm of 40 WebSockets, each subscribing with filters no message used before (values no cache
  holds, computed) as fast as its budget lets it (errors past it, or past the organization's read
  time).

Targets: the normal client's p99 under attack within 3x of its idle p99 (series and job), no process
of the platform over 1 GiB RSS, each refused attack answered in under 100 ms (p99).
Results: bench/results/abuse.json (--each: bench/results/abuse-each.json).

    python -m bench.bench_abuse [--tickets 50000] [--idle 20] [--attack 40] [--only series,websocket]
    python -m bench.bench_abuse --each   # each attack alone in turn, an idle phase before each
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import websocket

from bench.common import ROOT, Stack, latency_summary, platform_stack, print_table, write_results

LATENCY_RATIO = 3.0
RSS_LIMIT = 1024**3
REFUSAL_MS = 100.0
JOB_PERIOD = 0.2
HOSTILE_EMAIL = "hostile@abuse.test"
HOSTILE_PASSWORD = "hostile-password"  # noqa: S105 (a scratch user's)
FOUR_MIB_LOGIN = b"[" + b"{}," * (4 * 1024 * 1024 // 3) + b"{}]"
ALL_METRICS = ["ticket_count", "response_time", "resolution_time", "sentiment_score"]


class Client:
    """One bearer token's persistent HTTP connection (reopened when the server closes it)."""

    def __init__(self, port: int, token: str | None) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any, float]:
        """(status, parsed body, milliseconds)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        started = time.perf_counter()
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, anew
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    return 0, None, (time.perf_counter() - started) * 1000
        elapsed = (time.perf_counter() - started) * 1000
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return response.status, parsed, elapsed


def _flask(stack: Stack, *args: str) -> str:
    """Run the CLI against the stack's servers; its output."""
    command = [sys.executable, "-m", "flask", "--app", "webapp", *args]
    done = subprocess.run(command, cwd=ROOT, env=stack.env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def hostile_org(stack: Stack, tickets: int) -> tuple[int, str]:
    """A second organization with an admin and `tickets` seeded tickets: (org id, token)."""
    import psycopg

    from webapp.tickets import seeding

    org_id = int(json.loads(_flask(stack, "create-org", "Hostile", "--timezone", "UTC"))["id"])
    _flask(
        stack,
        "create-user",
        "--org",
        str(org_id),
        "--email",
        HOSTILE_EMAIL,
        "--password",
        HOSTILE_PASSWORD,
        "--role",
        "admin",
    )
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        seeding.seed_tickets(conn, org_id=org_id, tickets=tickets, seed=2, tz="UTC")
        conn.commit()
    return org_id, _flask(stack, "issue-token", "--email", HOSTILE_EMAIL)


# --- the normal client ---------------------------------------------------------------------------


def series_path(start: datetime) -> str:
    end = start + timedelta(days=90)
    query = f"granularity=daily&start={start:%Y-%m-%d}&end={end:%Y-%m-%d}"
    return f"/api/v1/analytics/time-series/ticket_count?{query}"


class Normal:
    """The normal client's two loops: a cached series, and small jobs waited for on the WebSocket."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.path = series_path(datetime.now(UTC) - timedelta(days=100))
        self.http = Client(stack.port, stack.admin_token)
        self.jobs_http = Client(stack.port, stack.admin_token)
        status, _, _ = self.http.call("GET", self.path)
        assert status == 200, status
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{stack.port}/api/v1/ws/analytics/{stack.org_id}",
            header=[f"Authorization: Bearer {stack.admin_token}"],
            timeout=60,
        )
        assert json.loads(self.ws.recv())["type"] == "connected"
        self.received: Counter[str] = Counter()
        self.timeline: list[tuple[float, float]] = []  # (wall clock, ms) of every series answer
        self.last_job = 0.0

    def series(self, stop: threading.Event, out: list[float], errors: Counter[int]) -> None:
        while not stop.is_set():
            status, _, ms = self.http.call("GET", self.path)
            if status == 200:
                out.append(ms)
                self.timeline.append((round(time.time(), 4), round(ms, 2)))
            else:
                errors[status] += 1
            time.sleep(0.01)

    def jobs(self, stop: threading.Event, out: list[float], errors: Counter[int]) -> None:
        while not stop.is_set():
            # One job every JOB_PERIOD at most: a person's pace, well inside the organization's budget
            # of jobs a minute (a quiet machine runs one in 30 ms; back to back they would exceed it).
            time.sleep(max(0.0, JOB_PERIOD - (time.perf_counter() - self.last_job)))
            self.last_job = started = time.perf_counter()
            status, body, _ = self.jobs_http.call("POST", "/api/v1/analytics/refresh-cache")
            if status != 202:
                errors[status] += 1
                continue
            while True:
                message = json.loads(self.ws.recv())
                self.received[message["type"]] += 1
                data = message.get("data", {})
                mine = message["type"] == "job_update" and data.get("job_id") == body["job_id"]
                if mine and data["state"] in ("succeeded", "failed", "cancelled"):
                    break
            if data["state"] == "succeeded":
                out.append((time.perf_counter() - started) * 1000)
            else:
                errors[-1] += 1

    def measure(self, seconds: float) -> dict[str, Any]:
        stop = threading.Event()
        series: list[float] = []
        jobs: list[float] = []
        errors: Counter[int] = Counter()
        self.timeline = []
        threads = [
            threading.Thread(target=self.series, args=(stop, series, errors)),
            threading.Thread(target=self.jobs, args=(stop, jobs, errors)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        if not series or not jobs:
            raise RuntimeError(f"the normal client went unanswered: {dict(errors)}, socket {self.received}")
        return {
            "series": latency_summary(series),
            "job": latency_summary(jobs),
            "errors": dict(errors),
            "socket_messages": dict(self.received),
            # The slowest answers, with when they came (to line them up with the server's logs).
            "slowest_series": sorted(self.timeline, key=lambda sample: -sample[1])[:20],
        }


# --- the hostile client --------------------------------------------------------------------------


def _attacks(port: int, org_id: int, token: str) -> dict[str, Callable[[Client, int], tuple[int, float]]]:
    """Each attack: one request of it (the i-th), answering (status, ms)."""

    def login_4mib(c: Client, i: int) -> tuple[int, float]:
        # As a client that announces 4 MiB and sends its first 64 KiB: the answer must not wait for more.
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (
                "POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(FOUR_MIB_LOGIN)}\r\n\r\n"
            )
            sock.sendall(head.encode() + FOUR_MIB_LOGIN[: 64 * 1024])
            answer = sock.recv(4096)
        ms = (time.perf_counter() - started) * 1000
        return (int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0), ms

    def wrong_passwords(c: Client, i: int) -> tuple[int, float]:
        status, _, ms = c.call(
            "POST", "/api/v1/auth/login", {"email": HOSTILE_EMAIL, "password": f"guess-{i}"}
        )
        return status, ms

    def huge_aggregation(c: Client, i: int) -> tuple[int, float]:
        body = {
            "metrics": ALL_METRICS,
            "group_by": ["channel", "priority"],
            "granularity": "hourly",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-06-23T14:00:00Z",
            "percentiles": list(range(4, 100, 5)),
            "async": i % 2 == 1,
        }
        status, _, ms = c.call("POST", "/api/v1/analytics/aggregations", body)
        return status, ms

    def exact_centuries(c: Client, i: int) -> tuple[int, float]:
        body = {
            "metrics": ["response_time"],
            "start": "1900-01-01",
            "end": "2199-01-01",
            "exact": True,
            "async": True,
        }
        status, _, ms = c.call("POST", "/api/v1/analytics/aggregations", body)
        return status, ms

    def aggregation_jobs(c: Client, i: int) -> tuple[int, float]:
        end = datetime.now(UTC).date()
        body = {
            "metrics": ALL_METRICS,
            "group_by": ["channel"],
            "granularity": "daily",
            "start": (end - timedelta(days=365)).isoformat(),
            "end": end.isoformat(),
            "percentiles": [50, 90, 1 + i % 98],
            "exact": True,
            "async": True,
        }
        status, _, ms = c.call("POST", "/api/v1/analytics/aggregations", body)
        time.sleep(0.05)
        return status, ms

    def export_jobs(c: Client, i: int) -> tuple[int, float]:
        body = {
            "format": ("csv", "json", "ndjson", "xlsx")[i % 4],
            "dataset": "tickets",
            "query": {"start": f"2025-{1 + i % 12:02d}-01"},
        }
        status, _, ms = c.call("POST", "/api/v1/analytics/export", body)
        time.sleep(0.05)
        return status, ms

    def distinct_series(c: Client, i: int) -> tuple[int, float]:
        status, _, ms = c.call("GET", series_path(datetime(2020, 1, 1) + timedelta(days=i)))
        return status, ms

    return {
        "4 MiB login body": login_4mib,
        "wrong passwords": wrong_passwords,
        "oversized aggregation": huge_aggregation,
        "exact over 1900-2199": exact_centuries,
        "largest aggregation jobs": aggregation_jobs,
        "export jobs": export_jobs,
        "a new series each time": distinct_series,
    }


def _run_attack(
    port: int,
    token: str | None,
    attack: Callable[[Client, int], tuple[int, float]],
    stop: threading.Event,
    out: list[tuple[int, float]],
) -> None:
    client = Client(port, token)
    i = 0
    while not stop.is_set():
        out.append(attack(client, i))
        i += 1


def _subscribe_loop(
    port: int,
    org_id: int,
    token: str,
    message: Callable[[int], dict[str, Any]],
    stop: threading.Event,
    out: list[tuple[int, float]],
) -> None:
    """On one socket, send `message(i)` for i = 0, 1, ... as fast as the socket takes it, each waited
    for; each answer counted (200 data, 429 an error)."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/v1/ws/analytics/{org_id}",
        header=[f"Authorization: Bearer {token}"],
        timeout=60,
    )
    ws.recv()
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        ws.send(json.dumps(message(i)))
        while True:
            answer = json.loads(ws.recv())
            if answer["type"] in ("subscription_data", "error"):
                break
        out.append(
            (200 if answer["type"] == "subscription_data" else 429, (time.perf_counter() - started) * 1000)
        )
        i += 1
    ws.close()


def _ws_flood(
    port: int, org_id: int, token: str, stop: threading.Event, out: list[tuple[int, float]]
) -> None:
    """Subscribe as fast as the socket takes it (a cached value, a new interval each time)."""
    _subscribe_loop(
        port,
        org_id,
        token,
        lambda i: {"type": "subscribe", "metrics": ["ticket_count"], "interval": 5 + i % 100},
        stop,
        out,
    )


SWARM_SOCKETS = 40
# The socket attacks' names (the others are _attacks' keys).
SOCKET_FLOOD = "WebSocket subscribe flood"
SOCKET_SWARM = "WebSocket swarm with distinct filters"
SWARM_METRICS = ["ticket_count", "response_time", "backlog"]


def _ws_swarm_socket(
    port: int, org_id: int, token: str, n: int, stop: threading.Event, out: list[tuple[int, float]]
) -> None:
    """One socket of a swarm: subscribe with filters no other message used (a value no cache holds,
    computed), as fast as the socket takes it; an error is its budget, or the organization's read time."""
    _subscribe_loop(
        port,
        org_id,
        token,
        lambda i: {
            "type": "subscribe",
            "metrics": SWARM_METRICS,
            "filters": {"category": [f"swarm-{n}-{i}"]},
        },
        stop,
        out,
    )


def _hostile(
    port: int,
    org_id: int,
    token: str,
    only: list[str],
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    """Every attack from a thread of its own until `stop`; then their (status, ms) answers to `results`.

    At the lowest CPU priority: an outside attacker's client runs on its own machine, and on this
    one its own work would otherwise take CPU the platform serves both clients with.
    """
    os.nice(19)
    halt = threading.Event()
    outcomes: dict[str, list[tuple[int, float]]] = {}
    threads = []
    for name, attack in _attacks(port, org_id, token).items():
        if not _chosen(name, only):
            continue
        outcomes[name] = []
        attacker = None if name in ("4 MiB login body", "wrong passwords") else token
        threads.append(
            threading.Thread(target=_run_attack, args=(port, attacker, attack, halt, outcomes[name]))
        )
    if _chosen(SOCKET_FLOOD, only):
        outcomes[SOCKET_FLOOD] = []
        threads.append(
            threading.Thread(target=_ws_flood, args=(port, org_id, token, halt, outcomes[SOCKET_FLOOD]))
        )
    if _chosen(SOCKET_SWARM, only):
        swarm: list[tuple[int, float]] = []
        outcomes[SOCKET_SWARM] = swarm
        threads += [
            threading.Thread(target=_ws_swarm_socket, args=(port, org_id, token, n, halt, swarm))
            for n in range(SWARM_SOCKETS)
        ]
    for thread in threads:
        thread.start()
    ready.set()
    stop.wait()
    halt.set()
    for thread in threads:
        thread.join()
    results.put(outcomes)


def _chosen(name: str, only: list[str]) -> bool:
    """Whether attack `name` runs: every one without --only, else those whose name holds one of its words."""
    return not only or any(word.lower() in name.lower() for word in only)


class CpuUse:
    """CPU seconds each kind of process on the machine used between two samples (every process of the
    machine, grouped: the platform's web and worker processes, PostgreSQL, Redis, the hostile client,
    this benchmark, the rest). A process that ended between the samples is not counted."""

    def __init__(self, stack: Stack) -> None:
        self.roots = {name: p.pid for name, p in zip(("worker", "web"), stack.processes, strict=True)}
        self.hostile_pid: int | None = None
        self.clients: dict[int, str] = {}
        self.before = self._sample()

    def _platform_group(self, proc: psutil.Process) -> str | None:
        for name, root in self.roots.items():
            if proc.pid == root or root in {parent.pid for parent in proc.parents()}:
                return name
        return None

    def _group(self, proc: psutil.Process) -> str:
        if proc.pid == os.getpid():
            return "benchmark (normal client)"
        if proc.pid == self.hostile_pid:
            return "hostile client"
        platform = self._platform_group(proc)
        if platform:
            return platform
        name = proc.name()
        if name.startswith("postgres"):
            # A backend's title names its client's address: whose connection it serves.
            title = " ".join(proc.cmdline())
            port = title.rsplit("(", 1)[-1].split(")", 1)[0] if "127.0.0.1(" in title else ""
            client = self.clients.get(int(port)) if port.isdigit() else None
            return f"postgres for {client}" if client else "postgres (other)"
        if name.startswith("redis"):
            return "redis"
        return "other"

    def _sample(self) -> dict[int, tuple[str, float]]:
        # Which platform process holds each local TCP port (the client ends of database connections).
        self.clients: dict[int, str] = {}
        for conn in psutil.net_connections(kind="tcp"):
            if conn.pid and conn.laddr:
                try:
                    group = self._platform_group(psutil.Process(conn.pid))
                except psutil.Error:
                    continue
                if group:
                    self.clients[conn.laddr.port] = group
        out = {}
        for proc in psutil.process_iter():
            try:
                times = proc.cpu_times()
                out[proc.pid] = (self._group(proc), times.user + times.system)
            except psutil.Error:
                continue
        return out

    def used(self) -> dict[str, float]:
        """Seconds of CPU per group since the last call (or since this was made)."""
        after = self._sample()
        spent: dict[str, float] = Counter()
        for pid, (group, seconds) in after.items():
            spent[group] += seconds - self.before.get(pid, (group, 0.0))[1]
        self.before = after
        return {group: round(seconds, 2) for group, seconds in sorted(spent.items())}


class RssWatch:
    """The largest RSS each platform process (and its children) reached, sampled every 0.2 s."""

    def __init__(self, stack: Stack) -> None:
        self.roots = {
            name: psutil.Process(p.pid) for name, p in zip(("worker", "web"), stack.processes, strict=True)
        }
        self.peak: dict[str, int] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, root in self.roots.items():
                try:
                    for proc in [root, *root.children(recursive=True)]:
                        label = f"{name} {'parent' if proc.pid == root.pid else 'child'}"
                        self.peak[label] = max(self.peak[label], proc.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(0.2)

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


ATTACK_NAMES = (*_attacks(0, 0, "").keys(), SOCKET_FLOOD, SOCKET_SWARM)


def _attack_phase(
    stack: Stack,
    normal: Normal,
    cpu: CpuUse,
    hostile: tuple[int, str],
    only: list[str],
    seconds: float,
) -> tuple[dict[str, Any], dict[str, float], dict[str, list[tuple[int, float]]]]:
    """The normal client measured for `seconds` while the hostile client runs the attacks `only`
    chooses: (its latencies, CPU seconds by process, each attack's (status, ms) answers)."""
    # The hostile client runs in a process of its own, as an outside attacker would: in this one its
    # threads would hold the interpreter the normal client's timings are taken in.
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=_hostile, args=(stack.port, *hostile, only, ready, stop, results))
    process.start()
    cpu.hostile_pid = process.pid
    try:
        ready.wait(60)
        time.sleep(2)  # the attacks reach their caps
        cpu.used()
        attacked = normal.measure(seconds)
        spent = cpu.used()
        stop.set()
        outcomes = results.get(timeout=120)
        process.join(30)
    finally:
        # Whatever went wrong here, the attacker's process must not outlive the run (it would keep a
        # CPU busy through the next one).
        if process.is_alive():
            process.kill()
    return attacked, spent, outcomes


def _drain(stack: Stack, token: str, timeout: float = 120) -> None:
    """Cancel the hostile organization's queued and running jobs and wait until none is left, so the
    next attack's idle phase starts from a quiet platform."""
    client = Client(stack.port, token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body, _ = client.call("GET", "/api/v1/jobs?state=queued,running&limit=100")
        if status == 429:
            time.sleep(1)
            continue
        assert status == 200, (status, body)
        if not body["items"]:
            return
        for job in body["items"]:
            client.call("DELETE", f"/api/v1/jobs/{job['id']}")
        time.sleep(1)
    raise RuntimeError("the hostile organization's jobs did not drain")


def _refusals(outcomes: dict[str, list[tuple[int, float]]]) -> dict[str, dict[str, Any]]:
    attacks = {}
    for name, answers in outcomes.items():
        refused = [ms for status, ms in answers if status >= 400]
        attacks[name] = {
            "requests": len(answers),
            "answers": dict(sorted(Counter(status for status, _ in answers).items())),
            "refused_p99_ms": latency_summary(refused)["p99_ms"] if refused else None,
        }
    return attacks


def _ratios(idle: dict[str, Any], attacked: dict[str, Any]) -> dict[str, float]:
    return {what: attacked[what]["p99_ms"] / idle[what]["p99_ms"] for what in ("series", "job")}


def _refusals_ok(attacks: dict[str, dict[str, Any]]) -> bool:
    return all(a["refused_p99_ms"] is None or a["refused_p99_ms"] < REFUSAL_MS for a in attacks.values())


def run_each(args: argparse.Namespace) -> dict[str, Any]:
    """Each attack alone on one platform: an idle phase, then the attack, then its jobs cancelled and
    drained, for every attack in turn (the target's "while a hostile client runs each attack")."""
    extra = {"JOB_MAX_RUNNING_PER_ORG": "1"}
    names = [name for name in ATTACK_NAMES if _chosen(name, args.only)]
    with platform_stack("bench_abuse", seed_tickets=args.tickets, extra_env=extra) as stack:
        hostile = hostile_org(stack, args.tickets)
        stack.start_worker()
        stack.start_web()
        normal = Normal(stack)
        rows = []
        with RssWatch(stack) as rss:
            if args.warmup > 0:
                normal.measure(args.warmup)
            cpu = CpuUse(stack)
            for name in names:
                cpu.used()  # the previous attack's teardown and drain are no one's idle
                idle = normal.measure(args.idle)
                cpu_idle = cpu.used()
                attacked, cpu_attacked, outcomes = _attack_phase(
                    stack, normal, cpu, hostile, [name], args.attack
                )
                attacks = _refusals(outcomes)
                ratios = _ratios(idle, attacked)
                rows.append(
                    {
                        "attack": name,
                        "idle": idle,
                        "under_attack": attacked,
                        "p99_ratios": ratios,
                        "attacks": attacks,
                        "cpu_seconds": {"idle": cpu_idle, "under_attack": cpu_attacked},
                        "passed": {
                            "latency": all(r <= LATENCY_RATIO for r in ratios.values()),
                            "refusals": _refusals_ok(attacks),
                        },
                    }
                )
                try:
                    _drain(stack, hostile[1])
                except RuntimeError as exc:
                    # The rows measured so far stand; the next attack would start from a busy platform.
                    rows[-1]["drain_error"] = str(exc)
                    break
        peak = dict(rss.peak)
    return {
        "mode": "each attack alone",
        "tickets_per_org": args.tickets,
        "warmup_seconds": args.warmup,
        "idle_seconds": args.idle,
        "attack_seconds": args.attack,
        "settings": extra,
        "runs": rows,
        "peak_rss_bytes": peak,
        "targets": {"p99_ratio": LATENCY_RATIO, "rss_bytes": RSS_LIMIT, "refused_p99_ms": REFUSAL_MS},
        "passed": {
            "latency": all(row["passed"]["latency"] for row in rows),
            "rss": max(peak.values()) <= RSS_LIMIT,
            "refusals": all(row["passed"]["refusals"] for row in rows),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = {"JOB_MAX_RUNNING_PER_ORG": "1"}
    with platform_stack("bench_abuse", seed_tickets=args.tickets, extra_env=extra) as stack:
        hostile = hostile_org(stack, args.tickets)
        worker_command = stack.start_worker()
        web_command = stack.start_web()
        normal = Normal(stack)
        with RssWatch(stack) as rss:
            # Warmed up first: the first jobs and reads of fresh processes (imports, connections,
            # the worker's first task) are not the idle baseline a running platform has.
            if args.warmup > 0:
                normal.measure(args.warmup)
            cpu = CpuUse(stack)
            idle = normal.measure(args.idle)
            cpu_idle = cpu.used()
            attacked, cpu_attacked, outcomes = _attack_phase(
                stack, normal, cpu, hostile, args.only, args.attack
            )
        peak = dict(rss.peak)
    attacks = _refusals(outcomes)
    ratios = _ratios(idle, attacked)
    refusals_ok = _refusals_ok(attacks)
    return {
        "tickets_per_org": args.tickets,
        "warmup_seconds": args.warmup,
        "idle_seconds": args.idle,
        "attack_seconds": args.attack,
        "attacks_run": args.only or "all",
        "web_command": web_command,
        "worker_command": worker_command,
        "settings": extra,
        "idle": idle,
        "under_attack": attacked,
        "p99_ratios": ratios,
        "attacks": attacks,
        "peak_rss_bytes": peak,
        # Where the machine's CPU went in each phase (two CPUs: at most 2 s a second).
        "cpu_seconds": {"idle": cpu_idle, "under_attack": cpu_attacked},
        "targets": {"p99_ratio": LATENCY_RATIO, "rss_bytes": RSS_LIMIT, "refused_p99_ms": REFUSAL_MS},
        "passed": {
            "latency": all(r <= LATENCY_RATIO for r in ratios.values()),
            "rss": max(peak.values()) <= RSS_LIMIT,
            "refusals": refusals_ok,
        },
    }


def print_each(result: dict[str, Any]) -> None:
    """The table of an --each run: one row an attack."""
    rows = []
    for row in result["runs"]:
        idle, attacked, ratios = row["idle"], row["under_attack"], row["p99_ratios"]
        refused = [a["refused_p99_ms"] for a in row["attacks"].values() if a["refused_p99_ms"] is not None]
        rows.append(
            (
                row["attack"],
                f"{idle['series']['p99_ms']:.1f} / {attacked['series']['p99_ms']:.1f}",
                round(ratios["series"], 2),
                f"{idle['job']['p99_ms']:.1f} / {attacked['job']['p99_ms']:.1f}",
                round(ratios["job"], 2),
                max(refused) if refused else "-",
                f"{row['cpu_seconds']['under_attack'].get('web', 0.0):g} / "
                f"{row['cpu_seconds']['under_attack'].get('worker', 0.0):g}",
            )
        )
    print_table(
        f"Each attack alone: the normal client's p99 ms, idle / attacked (target ratio <= {LATENCY_RATIO:g}, "
        f"refusals < {REFUSAL_MS:g} ms)",
        ["attack", "series p99", "ratio", "job p99", "ratio", "refused p99 ms", "web / worker CPU s"],
        rows,
    )
    print_table(
        "Peak RSS, MiB",
        ["process", "MiB"],
        [(name, round(rss / 2**20, 1)) for name, rss in sorted(result["peak_rss_bytes"].items())],
    )
    print(f"\npassed: {result['passed']}")
    print(f"results: {write_results('abuse-each', result)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--attack", type=float, default=40.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of the normal client not counted")
    parser.add_argument(
        "--only",
        type=lambda text: [word for word in text.split(",") if word],
        default=[],
        help="comma-separated words: run only the attacks whose names hold one (to see what each costs)",
    )
    parser.add_argument(
        "--each",
        action="store_true",
        help="each attack alone in turn (an idle phase before each), instead of every attack at once",
    )
    args = parser.parse_args()
    if args.each:
        print_each(run_each(args))
        return
    result = run(args)
    rows = [
        (
            what,
            result["idle"][what]["n"],
            result["idle"][what]["p99_ms"],
            result["under_attack"][what]["n"],
            result["under_attack"][what]["p99_ms"],
            result["p99_ratios"][what],
            LATENCY_RATIO,
        )
        for what in ("series", "job")
    ]
    print_table(
        "Normal client, p99 ms: idle and under attack",
        ["request", "idle n", "idle p99", "attacked n", "attacked p99", "ratio", "target"],
        rows,
    )
    print_table(
        "Hostile client (a process of its own), each attack from its own thread",
        ["attack", "requests", "answers", "refused p99 ms"],
        [
            (
                name,
                a["requests"],
                " ".join(f"{k}:{v}" for k, v in a["answers"].items()),
                a["refused_p99_ms"] or "-",
            )
            for name, a in result["attacks"].items()
        ],
    )
    print_table(
        "Peak RSS, MiB",
        ["process", "MiB"],
        [(name, round(rss / 2**20, 1)) for name, rss in sorted(result["peak_rss_bytes"].items())],
    )
    spent, idle_s, attack_s = result["cpu_seconds"], result["idle_seconds"], result["attack_seconds"]
    print_table(
        f"CPU seconds by process ({idle_s:g} s idle, {attack_s:g} s attacked)",
        ["process", "idle", "under attack"],
        [
            (group, spent["idle"].get(group, 0.0), spent["under_attack"].get(group, 0.0))
            for group in sorted(set(spent["idle"]) | set(spent["under_attack"]))
        ],
    )
    print(f"\npassed: {result['passed']}")
    print(f"results: {write_results('abuse', result)}")


if __name__ == "__main__":
    main()
