"""Shared benchmark plumbing: scratch embedded services, a printed table, and JSON results."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.ports import free_port, port_open
from devstack.procfile import command_args, read_procfile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCH_INSTANCE = ROOT / "instance" / "bench"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def insert_org(conn: Any, tz: str, name: str = "Bench") -> int:
    """A new organization in `tz` on psycopg connection `conn` (not committed): its id."""
    row = conn.execute(
        "INSERT INTO organizations (name, timezone) VALUES (%s, %s) RETURNING id", (name, tz)
    ).fetchone()
    assert row is not None
    return int(row[0])


def scratch_redis(name: str | None = None) -> Any:
    """A throwaway embedded Redis for one benchmark run, kept apart from other benchmarks' servers."""
    from devstack.redis import EmbeddedRedis

    # One server per benchmark: two benchmarks sharing one would stop it under each other.
    name = name or Path(sys.argv[0]).stem
    server = EmbeddedRedis(BENCH_INSTANCE / f"redis-{name}", persist=False)
    server.start()
    return server


def scratch_postgres(database: str, *, reuse: bool = False) -> tuple[Any, str]:
    """A PostgreSQL cluster of this database's own and a fresh, migrated database in it.

    `reuse`: keep the database if it exists (a benchmark that seeds once and measures later).
    """
    import psycopg

    from devstack.postgres import EmbeddedPostgres
    from webapp.infra.migrations import upgrade

    # A cluster per database, so that a benchmark stopping its server never stops another's.
    pg = EmbeddedPostgres(BENCH_INSTANCE / f"postgres-{database}", fast_unsafe=True)
    pg.start()
    pg.wait_ready()
    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not (reuse and exists):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
    url = pg.url(database)
    upgrade(url)
    return pg, url


def settle(conn: Any, *tables: str, passes: int = 3) -> None:
    """VACUUM ANALYZE `tables` (autocommit `conn`), then VACUUM again while some of their pages are not
    all-visible, as autovacuum's later passes leave them: right after a bulk build, an autoanalyze
    running beside the first pass holds back the rows it may mark, and index-only reads of those
    pages then visit the heap (2,673 heap fetches in a one-year business read at 1M, 3x its time)."""
    for table in tables:
        conn.execute(f"VACUUM ANALYZE {table}")
        for _ in range(passes):
            pages, visible = conn.execute(
                "SELECT coalesce(sum(c.relpages), 0), coalesce(sum(c.relallvisible), 0)"
                " FROM pg_partition_tree(%s) p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf",
                (table,),
            ).fetchone()
            if visible >= pages:
                break
            conn.execute(f"VACUUM {table}")


# --- the platform's own processes, started as the Procfile starts them ---------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `samples`."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """Count, p50, p90, p99, max and mean of latencies in milliseconds."""
    return {
        "n": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p90_ms": percentile(samples_ms, 90),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
        "mean_ms": statistics.fmean(samples_ms),
    }


def procfile_command(process: str, port: int | None = None) -> list[str]:
    """The Procfile's command line for `process`, with $PORT filled in and the venv's executables."""
    command = read_procfile(ROOT / "Procfile").get(process)
    if command is None:
        raise RuntimeError(f"the Procfile has no {process!r} process")
    args = command_args(command, port=port, bin_dir=Path(sys.executable).parent)
    if process == "web" and (ROOT / "gunicorn.conf.py").exists() and "-c" not in args:
        args[1:1] = ["-c", str(ROOT / "gunicorn.conf.py")]
    return args


@dataclass
class Stack:
    """Scratch PostgreSQL and Redis, an organization with an admin, and the processes started on them."""

    database_url: str
    redis_url: str
    env: dict[str, str]
    org_id: int
    admin_token: str
    port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)

    def start_web(self, *, app: str | None = None) -> list[str]:
        """gunicorn as the Procfile's web line runs it (`app` replaces its application spec)."""
        self.port = free_port()
        args = procfile_command("web", self.port)
        if app is not None:
            args[-1] = app
        self._spawn("web", args)
        deadline = time.monotonic() + 60
        while not port_open(self.port):
            if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {self.log_path('web')}")
            time.sleep(0.1)
        return args

    def start_worker(self) -> list[str]:
        """A Celery worker with the Procfile's options; returns once it has sent its first heartbeat."""
        args = procfile_command("worker")
        self._spawn("worker", args)
        client = self.redis
        deadline = time.monotonic() + 90
        while not client.zcard("an:ops:workers"):
            if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not become ready; see {self.log_path('worker')}")
            time.sleep(0.1)
        return args

    def log_path(self, name: str) -> Path:
        return Path(self.env["INSTANCE_PATH"]) / f"{name}.log"

    def _spawn(self, name: str, args: list[str]) -> None:
        with self.log_path(name).open("wb") as log:
            self.processes.append(
                subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop_processes(self) -> None:
        """SIGTERM each process started here (newest first), SIGKILL what outlives its grace period."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()


@contextmanager
def platform_stack(
    name: str, *, seed_tickets: int = 0, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Fresh scratch services for benchmark `name`, an organization seeded with rollups built, and cleanup.

    The organization (Europe/Berlin) gets `seed_tickets` tickets over the past year, its rollups built
    in bulk, and an admin user; the stack's env points the platform's processes at the scratch servers.
    """
    import psycopg
    from sqlalchemy.orm import Session

    from webapp import config, create_app
    from webapp.analytics import rollups
    from webapp.infra.engines import make_engine
    from webapp.models import User
    from webapp.security.passwords import hash_password
    from webapp.security.tokens import access_token_for
    from webapp.tickets import seeding

    instance = BENCH_INSTANCE / name
    instance.mkdir(parents=True, exist_ok=True)
    redis_server = scratch_redis(name)
    pg, url = scratch_postgres(name)
    stack: Stack | None = None
    try:
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            org_id = insert_org(conn, "Europe/Berlin")
            conn.commit()
            if seed_tickets:
                seeding.seed_tickets(conn, org_id=org_id, tickets=seed_tickets, seed=1, tz="Europe/Berlin")
                conn.commit()
                conn.execute("ANALYZE")
                conn.commit()
        engine = make_engine(url)
        with Session(engine) as session:
            if seed_tickets:
                now = datetime.now(UTC)
                rollups.build(session, org_id=org_id, start=now - timedelta(days=366), end=now)
            user = User(
                org_id=org_id, email="admin@bench.test", password_hash=hash_password("bench"), role="admin"
            )
            session.add(user)
            session.commit()
            user_id = user.id
        engine.dispose()
        secret = secrets.token_urlsafe(48)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_server.url,
            "BROKER_URL": redis_server.url,
            "INSTANCE_PATH": str(instance),
            "JWT_SECRET_KEY": secret,
            "EXPORT_DIR": str(instance / "exports"),
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        settings = config.load()
        settings.update(
            INSTANCE_PATH=str(instance),
            SQLALCHEMY_DATABASE_URL=url,
            REDIS_URL=redis_server.url,
            BROKER_URL=redis_server.url,
            JWT_SECRET_KEY=secret,
            JWT_ACCESS_TOKEN_MINUTES=240,
        )
        app = create_app(settings)
        # Closed, not left to the garbage collector: an open transaction held for the whole run keeps
        # PostgreSQL from pruning dead row versions, and updates slow down as they pile up.
        with app.app_context(), app.extensions["db_sessionmaker"]() as session:
            token = access_token_for(session.get(User, user_id))
        app.extensions["db_engine"].dispose()
        stack = Stack(url, redis_server.url, env, org_id, token)
        yield stack
    finally:
        if stack is not None:
            stack.stop_processes()
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(
                f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.stop()
        redis_server.stop()
