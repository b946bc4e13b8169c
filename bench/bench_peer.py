"""Cold reads over HTTP against DuckDB on the same tickets: each question of an endpoint, timed and compared.

One organization (Europe/Berlin) gets --tickets synthetic tickets over a year from the project's own
seeding, its rollups built as production builds them, then VACUUM ANALYZE as autovacuum would leave it;
the SLA verdicts of its settled days are counted and its hours summed per local day, as beat does every
minute. The same tickets and events are exported with COPY and loaded into an in-memory DuckDB, sorted
by time as a user would load them. gunicorn runs as the Procfile says (with a worker for aggregations
that become jobs). Each question is asked over HTTP with the organization's analytics cache emptied
before every request (DELETE /analytics/cache, not timed), so each answer is a cache miss, what a
dashboard's first load feels, timed from sending the request to reading its answer's last byte
(until 12-06 06:00 UTC the emptying and the client's parsing of the JSON were timed too); and as
DuckDB SQL with the same time-zone bucketing and metric definitions, timed from each query to its
rows fetched into Python (until 12-06 07:00 UTC the comparison's reshaping of the rows was timed
too). Both sides run --runs times after a warm-up (p50). The answers are compared: counts exact,
averages, minima, maxima and shares to 1e-9 relative, percentiles within 1% (the platform merges
sketches above ROLLUP_EXACT_PERCENTILE_MAX measurements). Results: bench/results/peer_<N>.json.

The questions, and how each is asked of DuckDB, are in bench/peer_questions.py.

    python -m bench.bench_peer [--tickets 10000000] [--runs 5] [--keep] [--only SUBSTRING]

--keep leaves the seeded cluster and the exported files under instance/bench/ and reuses them on the
next run of the same size (seeding 10M tickets takes half an hour on 2 CPUs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import psycopg

from bench.common import BENCH_INSTANCE, Stack, insert_org, print_table, scratch_redis, write_results
from bench.peer_questions import (
    API,
    QUESTIONS,
    SCHEDULE,
    TZ,
    TZ_NAME,
    Question,
    Tree,
    Window,
    differences,
    flatten,
    schedule_spans,
)

EVENT_COLUMNS = "ticket_id, event_type, occurred_at, status, priority, channel, category, assigned_to, value"
TICKET_COLUMNS = (
    "id, status, priority, channel, category, assigned_to, sentiment_score, created_at,"
    " first_response_at, resolved_at"
)


# --- setup: seed, rollups, VACUUM ANALYZE, export; kept for the next run with --keep ---------------


@dataclass
class Setup:
    """A seeded cluster, what was measured setting it up, and the files its tickets were exported to."""

    pg: Any
    url: str
    home: Path
    facts: dict[str, Any]

    @property
    def now(self) -> datetime:
        """The instant the tickets were seeded up to."""
        return datetime.fromisoformat(self.facts["now"])


def _conninfo(url: str) -> str:
    return url.replace("+psycopg", "")


def prepare(tickets: int) -> Setup:
    """The cluster of this size, seeded, rolled up, analyzed and exported (reused when already done)."""
    from devstack.postgres import EmbeddedPostgres

    name = f"bench_peer_{tickets}"
    home = BENCH_INSTANCE / f"peer-{tickets}"
    home.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(BENCH_INSTANCE / f"postgres-{name}", fast_unsafe=True)
    pg.start()
    pg.wait_ready()
    url = pg.url(name)
    done = home / "setup.json"
    if done.exists():
        from webapp.infra.migrations import upgrade

        # A kept cluster follows the code's migrations (a new one backfills what it adds), then is
        # vacuumed and analyzed as autovacuum would leave the rows a backfill rewrote (tables it did
        # not touch are skipped page by page: their pages are all-visible already).
        started = time.perf_counter()
        upgrade(url)
        with psycopg.connect(_conninfo(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"kept cluster migrated and vacuumed in {time.perf_counter() - started:.1f} s")
        kept = json.loads(done.read_text())
        counted, seconds = count_sla_days(url, kept["org_id"])
        print(f"SLA verdicts of {counted} due days counted in {seconds:.1f} s")
        summed, seconds = sum_metric_days(url, kept["org_id"])
        print(f"rollups of {summed} due days summed in {seconds:.1f} s")
        if "schedule_id" not in kept:  # kept from before the business-hours questions
            kept.update(add_schedule(url, kept["org_id"], datetime.fromisoformat(kept["now"])))
            done.write_text(json.dumps(kept, indent=2))
        return Setup(pg, url, home, kept)
    _check_disk(home, tickets)
    facts = _seed(pg, url, name, tickets)
    facts["sla_days"], facts["sla_days_s"] = count_sla_days(url, facts["org_id"])
    facts["metric_days"], facts["metric_days_s"] = sum_metric_days(url, facts["org_id"])
    facts.update(add_schedule(url, facts["org_id"], datetime.fromisoformat(facts["now"])))
    facts.update(_export(url, home, facts["org_id"]))
    done.write_text(json.dumps(facts, indent=2))
    return Setup(pg, url, home, facts)


# Disk a seeded ticket takes: the cluster with its rollups and indexes, and the CSV exports (10M
# tickets took 47 GB and 9.3 GB); a quarter more for the rollup build's temporary files and WAL.
BYTES_PER_TICKET = 5_600 * 5 // 4


def _check_disk(home: Path, tickets: int) -> None:
    """Refuse to start a seed the disk cannot hold (a full disk fails it an hour in)."""
    needed = tickets * BYTES_PER_TICKET
    free = shutil.disk_usage(home).free
    if free < needed:
        raise SystemExit(
            f"seeding {tickets:,} tickets needs about {needed / 1e9:.0f} GB of disk and"
            f" {free / 1e9:.0f} GB are free under {home}; free some (old clusters under"
            f" {BENCH_INSTANCE}) or ask for fewer tickets"
        )


def _seed(pg: Any, url: str, name: str, tickets: int) -> dict[str, Any]:
    from sqlalchemy.orm import Session

    from webapp.analytics import rollups
    from webapp.infra.engines import make_engine
    from webapp.infra.migrations import upgrade
    from webapp.models import User
    from webapp.security.passwords import hash_password
    from webapp.tickets import seeding

    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    upgrade(url)
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(_conninfo(url)) as conn:
        org_id = insert_org(conn, TZ_NAME)
        conn.commit()
        seeded = seeding.seed_tickets(conn, org_id=org_id, tickets=tickets, seed=1, tz=TZ_NAME, now=now)
        conn.commit()
        conn.autocommit = True
        started = time.perf_counter()
        # Every table the seed wrote, the SLA facts (each row rewritten by the steps' and replies'
        # triggers) and the replies included, as autovacuum would leave them.
        conn.execute("VACUUM ANALYZE")
        analyze_s = time.perf_counter() - started
    engine = make_engine(url)
    with Session(engine) as session:
        started = time.perf_counter()
        rollups.build(session, org_id=org_id, start=now - timedelta(days=366), end=now)
        session.add(
            User(org_id=org_id, email="admin@bench.test", password_hash=hash_password("b"), role="admin")
        )
        session.commit()
        build_s = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analytics_metrics")
        conn.execute("VACUUM ANALYZE users")
    return {
        "tickets": tickets,
        "events": seeded.events,
        "org_id": org_id,
        "now": now.isoformat(),
        "seed_s": seeded.seconds,
        "analyze_s": analyze_s,
        "rollup_build_s": build_s,
    }


def add_schedule(url: str, org_id: int, now: datetime) -> dict[str, Any]:
    """The organization's default schedule (peer_questions.SCHEDULE) with its business rollups built
    as beat builds them for a new schedule, then analyzed: its id and the build's seconds."""
    from sqlalchemy.orm import Session

    from webapp.analytics import rollups
    from webapp.clocks.schedules import create_schedule
    from webapp.infra.engines import make_engine

    engine = make_engine(url)
    with Session(engine) as session:
        schedule_id = create_schedule(session, org_id, {**SCHEDULE, "default": True}).id
        session.commit()
        started = time.perf_counter()
        rollups.build_business(session, org_id=org_id, schedule_id=schedule_id, now=now)
        session.commit()
        seconds = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analytics_business_metrics, analytics_business_values")
    print(f"schedule {schedule_id}: business rollups built in {seconds:.1f} s", flush=True)
    return {"schedule_id": schedule_id, "business_build_s": seconds}


def count_sla_days(url: str, org_id: int) -> tuple[int, float]:
    """Count ahead the SLA verdicts of the organization's settled days, as beat does every minute:
    the days counted and the seconds it took."""
    from sqlalchemy.orm import Session

    from webapp.analytics import sla_days
    from webapp.infra.engines import make_engine

    engine = make_engine(url)
    started = time.perf_counter()
    with Session(engine) as session:
        counted = sla_days.count_days(session, org_id=org_id, now=datetime.now(UTC)) or 0
    seconds = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE sla_verdict_days, sla_verdict_day_builds, sla_verdict_day_marks")
    return counted, seconds


def sum_metric_days(url: str, org_id: int) -> tuple[int, float]:
    """Sum the organization's hourly rollups per local day, as beat does every minute: the days
    summed and the seconds it took."""
    from sqlalchemy.orm import Session

    from webapp.analytics import metric_days
    from webapp.infra.engines import make_engine
    from webapp.models import Organization

    engine = make_engine(url)
    started = time.perf_counter()
    with Session(engine) as session:
        org = session.get(Organization, org_id)
        assert org is not None
        tz_name = org.timezone
        session.commit()
        summed = metric_days.sum_days(session, org_id=org_id, tz_name=tz_name, now=datetime.now(UTC)) or 0
    seconds = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "VACUUM ANALYZE analytics_metric_days, analytics_metric_day_builds, analytics_metric_day_marks"
        )
    return summed, seconds


def _export(url: str, home: Path, org_id: int) -> dict[str, Any]:
    """COPY the organization's tickets and events to CSV files beside the cluster."""
    started = time.perf_counter()
    with psycopg.connect(_conninfo(url)) as conn, conn.cursor() as cur:
        for table, columns in (("tickets", TICKET_COLUMNS), ("ticket_events", EVENT_COLUMNS)):
            statement = f"COPY (SELECT {columns} FROM {table} WHERE org_id = %s) TO STDOUT (FORMAT csv)"
            with (home / f"{table}.csv").open("wb") as out, cur.copy(statement, (org_id,)) as copy:
                for block in copy:
                    out.write(block)
    return {"export_s": time.perf_counter() - started}


def load_duckdb(home: Path, now: datetime) -> tuple[duckdb.DuckDBPyConnection, float]:
    """An in-memory DuckDB holding the exported tickets and events, each sorted by its time, and the
    schedule's open spans of the seeded year (with the days around it) for the business-hours questions."""
    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    text, ts, num = "VARCHAR", "TIMESTAMPTZ", "DOUBLE"
    tables = {
        "tickets": (TICKET_COLUMNS, ["BIGINT", *[text] * 5, num, ts, ts, ts], "created_at"),
        "ticket_events": (EVENT_COLUMNS, ["BIGINT", text, ts, *[text] * 5, num], "occurred_at"),
    }
    for table, (columns, types, order) in tables.items():
        spec = ", ".join(f"'{c.strip()}': '{t}'" for c, t in zip(columns.split(","), types, strict=True))
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv('{home / (table + '.csv')}',"
            f" header = false, columns = {{{spec}}}) ORDER BY {order}"
        )
    day = now.astimezone(TZ).date()
    con.execute("CREATE TABLE spans (start_us BIGINT, len BIGINT, before BIGINT)")
    con.executemany(
        "INSERT INTO spans VALUES (?, ?, ?)",
        schedule_spans(day - timedelta(days=400), day + timedelta(days=2)),
    )
    return con, time.perf_counter() - started


class Client:
    """One persistent HTTP connection to the web process with an admin's token."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Tree | None = None) -> tuple[int, Tree]:
        """One request: its status and JSON body."""
        status, raw = self.fetch(method, path, body)
        return status, json.loads(raw) if raw else {}

    def fetch(self, method: str, path: str, body: Tree | None = None) -> tuple[int, bytes]:
        """One request: its status and the bytes of its body, read to the last."""
        payload = json.dumps(body) if body is not None else None
        try:
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # gunicorn closes a connection idle past its keep-alive (while DuckDB ran): reconnect.
            self.conn.close()
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
        return response.status, response.read()

    def cold(self, method: str, path: str, body: Tree | None) -> tuple[Tree, bool, float]:
        """The answer with the cache emptied first (an aggregation that became a job: its result),
        and the milliseconds from sending the request to reading its answer's last byte (the cache's
        emptying and the parsing of the answer are not timed)."""
        status, _ = self.call("DELETE", f"{API}/analytics/cache")
        assert status in (200, 202, 204), status
        started = time.perf_counter()
        status, raw = self.fetch(method, path, body)
        if status == 202:
            answer = json.loads(raw)
            while True:
                status, raw = self.fetch("GET", answer["status_url"])
                elapsed = (time.perf_counter() - started) * 1000
                job = json.loads(raw)
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    if job["state"] != "succeeded":
                        raise Unanswered(f"job {job['state']}: {job.get('error')}")
                    return job["result"], True, elapsed
                time.sleep(0.01)
        elapsed = (time.perf_counter() - started) * 1000
        answer = json.loads(raw) if raw else {}
        if status != 200:
            raise Unanswered(f"{status}: {answer.get('error', {}).get('message')}")
        assert answer.get("meta", {}).get("cache", "miss") == "miss", answer["meta"]
        return answer, False, elapsed


class TimedDuck:
    """A DuckDB connection whose `execute` runs the query and fetches its rows at once, adding the
    time to `seconds`: what the comparison then makes of the rows is not timed, as the platform's
    side does not time parsing its JSON."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.seconds = 0.0

    def execute(self, sql: str, params: Any = None) -> Fetched:
        started = time.perf_counter()
        rows = self.con.execute(sql, params).fetchall()
        self.seconds += time.perf_counter() - started
        return Fetched(rows)


@dataclass
class Fetched:
    """Rows already fetched, read as DuckDB's result would be."""

    rows: list[Any]

    def fetchall(self) -> list[Any]:
        return self.rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


class Unanswered(Exception):
    """The platform gave no answer (an error status, or a job that did not succeed)."""


# A question whose first answer takes longer than this is timed once more, not `runs` times.
SLOW_MS = 10_000


def ask(question: Question, client: Client, con: duckdb.DuckDBPyConnection, end_day: date, runs: int) -> Tree:
    """Warm both sides once, time `runs` of each (p50), and compare the last platform answer with DuckDB's."""
    method, path, body = question.request(Window(end_day, datetime.now(UTC)))
    platform_ms: list[float] = []
    duck_ms: list[float] = []
    answer: Tree = {}
    failure = None
    for i in range(runs + 1):
        began = datetime.now(UTC)
        started = time.perf_counter()
        try:
            answer, via_job, elapsed = client.cold(method, path, body)
        except Unanswered as exc:
            failure = str(exc)
            elapsed = (time.perf_counter() - started) * 1000
        ended = datetime.now(UTC)
        if i or failure:
            platform_ms.append(elapsed)
        if failure or (i and elapsed > SLOW_MS):
            break
    for i in range(runs + 1):
        timed = TimedDuck(con)
        question.duck(cast(duckdb.DuckDBPyConnection, timed), Window(end_day, datetime.now(UTC)))
        if i:
            duck_ms.append(timed.seconds * 1000)
    early, late = (question.duck(con, Window(end_day, moment)) for moment in (began, ended))
    wrong = [f"no answer: {failure}"] if failure else differences(question.answer(answer), early, late)
    meta = answer.get("meta", {})
    return {
        "question": question.name,
        "request": f"{method} {path}" + (f" {json.dumps(body)}" if body else ""),
        "platform_ms": statistics.median(platform_ms),
        "duckdb_ms": statistics.median(duck_ms),
        "platform_runs_ms": platform_ms,
        "duckdb_runs_ms": duck_ms,
        "source": "failed" if failure else "job" if via_job else meta.get("source"),
        "approximate": meta.get("approximate"),
        "compared": len(flatten(early)),
        "equal": not wrong,
        "differences": wrong[:10],
    }


def serve(setup: Setup, redis_url: str) -> Stack:
    """gunicorn and a worker as the Procfile runs them, on the seeded database, with an admin's token."""
    from webapp import config, create_app
    from webapp.models import User
    from webapp.security.tokens import access_token_for

    instance = setup.home / "instance"
    instance.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": setup.url,
        "REDIS_URL": redis_url,
        "BROKER_URL": redis_url,
        "INSTANCE_PATH": str(instance),
        "JWT_SECRET_KEY": secret,
        "JWT_ACCESS_TOKEN_MINUTES": "600",
        "EXPORT_DIR": str(instance / "exports"),
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ANALYTICS_PER_MINUTE": str(10**9),
        "RATE_LIMIT_JOBS_PER_MINUTE": str(10**9),
    }
    settings = config.load()
    settings.update(
        INSTANCE_PATH=str(instance),
        SQLALCHEMY_DATABASE_URL=setup.url,
        REDIS_URL=redis_url,
        BROKER_URL=redis_url,
        JWT_SECRET_KEY=secret,
        JWT_ACCESS_TOKEN_MINUTES=600,
    )
    app = create_app(settings)
    with app.app_context(), app.extensions["db_sessionmaker"]() as session:
        user = session.query(User).filter_by(email="admin@bench.test").one()
        token = access_token_for(user)
    app.extensions["db_engine"].dispose()
    stack = Stack(setup.url, redis_url, env, setup.facts["org_id"], token)
    stack.start_web()
    stack.start_worker()
    return stack


def sizes(setup: Setup, con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Bytes each side holds the data in: PostgreSQL tables with indexes and rollups, DuckDB's memory."""
    with psycopg.connect(_conninfo(setup.url)) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('tickets'), pg_total_relation_size('ticket_events'),"
            " (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('analytics_metrics'))"
        ).fetchone()
    assert row is not None
    duck = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
    return {
        "pg_tickets": int(row[0]),
        "pg_events": int(row[1]),
        "pg_rollups": int(row[2]),
        "duckdb_memory": int(duck[0]) if duck else 0,
    }


def run(args: argparse.Namespace) -> Tree:
    """Set up (or reuse), load DuckDB, serve, and ask every chosen question."""
    setup = prepare(args.tickets)
    redis_server = scratch_redis("bench_peer")
    stack: Stack | None = None
    try:
        print(f"loading {args.tickets:,} tickets into DuckDB ...", flush=True)
        con, load_s = load_duckdb(setup.home, setup.now)
        con.execute(f"SET threads = {os.cpu_count()}")
        stack = serve(setup, redis_server.url)
        client = Client(stack.port, stack.admin_token)
        end_day = setup.now.astimezone(TZ).date() + timedelta(days=1)
        chosen = [q for q in QUESTIONS if args.only in q.name]
        results = []
        for question in chosen:
            result = ask(question, client, con, end_day, args.runs)
            mark = "equal" if result["equal"] else f"DIFFERENT: {result['differences'][:2]}"
            print(
                f"  {question.name}: {result['platform_ms']:.1f} ms vs {result['duckdb_ms']:.1f} ms, {mark}",
                flush=True,
            )
            results.append(result)
        return {
            "setup": {**setup.facts, "duckdb_load_s": load_s, "bytes": sizes(setup, con)},
            "runs": args.runs,
            "web_command": "gunicorn (Procfile web), one Celery worker (Procfile worker)",
            "questions": results,
        }
    finally:
        if stack is not None:
            stack.stop_processes()
        redis_server.stop()
        setup.pg.stop()
        if not args.keep:
            shutil.rmtree(setup.home, ignore_errors=True)
            shutil.rmtree(BENCH_INSTANCE / f"postgres-bench_peer_{args.tickets}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=10_000_000, help="seeded tickets (default 10,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per question and side (p50)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded cluster and exports for the next run"
    )
    parser.add_argument("--only", default="", help="ask only the questions whose name contains this")
    parser.add_argument(
        "--setup-only", action="store_true", help="seed, build and export, then stop (with --keep)"
    )
    args = parser.parse_args()
    if args.setup_only:
        prepare(args.tickets).pg.stop()
        return
    out = run(args)
    rows = [
        [
            r["question"],
            r["platform_ms"],
            r["duckdb_ms"],
            r["platform_ms"] / r["duckdb_ms"],
            r["source"],
            "yes" if r["equal"] else "NO",
        ]
        for r in out["questions"]
    ]
    print_table(
        f"Cold reads at {args.tickets:,} tickets, p50 of {args.runs} (ms)",
        ["question", "platform", "duckdb", "ratio", "source", "equal"],
        rows,
    )
    setup = out["setup"]
    wins = sum(r["platform_ms"] <= r["duckdb_ms"] for r in out["questions"])
    equal = sum(r["equal"] for r in out["questions"])
    print(
        f"\nseeded in {setup['seed_s']:.0f} s, rollups built in {setup['rollup_build_s']:.0f} s,"
        f" DuckDB loaded in {setup['duckdb_load_s']:.0f} s; platform wins {wins} of {len(rows)},"
        f" answers equal {equal} of {len(rows)}"
    )
    path = write_results(f"peer_{args.tickets}", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
