"""Faults survived, on real processes: a worker killed in the middle of an export, Redis restarted
during a stream of job submissions, PostgreSQL restarted under load.

Each test runs its own gunicorn and Celery worker against its own Redis (and, for the PostgreSQL
restart, its own cluster), so the session's shared services are never disturbed. Each proves that
every accepted job reaches a final state, nothing accepted is lost, no result is duplicated, and
the API answers the whole time: degraded answers and 503 allowed, any other 5xx never.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from devstack.ports import free_port, port_open
from tests.conftest import JWT_SECRET, ROOT, db_scalar, running_pool_pid, wait_for_job
from webapp.core.timeutil import utcnow
from webapp.infra.migrations import upgrade
from webapp.jobs import submission as jobs
from webapp.models import Job
from webapp.security.passwords import hash_password
from webapp.tickets import seeding

pytestmark = pytest.mark.slow

GUNICORN = [sys.executable, "-m", "gunicorn", "--worker-class", "gevent", "--workers", "1"]
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel", "INFO"]
QUEUES = "default,exports,refresh,overflow,periodic"
FINAL = ("succeeded", "failed", "cancelled")
UNAVAILABLE_CODES = ("service_unavailable", "database_unavailable")
SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
# Small enough that a message of a fully killed worker comes back within the test; the worker
# refuses to start unless soft < hard < visibility.
VISIBILITY_TIMEOUT = 10
# How often a worker sweeps for unacknowledged messages older than the visibility timeout (those of
# a lost worker, or reserved when the broker connection dropped). Kombu's default is every 100 s
# (unacked_restore_interval 10 s x throttle 10); celeryconfig.py reads BROKER_RESTORE_INTERVAL.
RESTORE_INTERVAL = 2
FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "BROKER_RESTORE_INTERVAL": str(RESTORE_INTERVAL),
    "TASK_SOFT_TIME_LIMIT": "6",
    "TASK_TIME_LIMIT": "8",
}


# --- processes ----------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all
    body: Any
    headers: dict[str, str]
    label: str = ""
    at: float = 0.0


@dataclass
class Web:
    base_url: str
    proc: subprocess.Popen[bytes]

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=20) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, headers = exc.read(), exc.code, dict(exc.headers)
        except OSError as exc:
            return Answer(0, str(exc), {}, f"{method} {path}", started)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw[:200]
        return Answer(status, parsed, headers, f"{method} {path}", started)


@dataclass
class Stack:
    """One web and one worker process (restartable) against a given PostgreSQL and Redis."""

    database_url: str
    redis_url: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    web: Web | None = None
    worker: subprocess.Popen[bytes] | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            BROKER_URL=self.redis_url,
            INSTANCE_PATH=str(self.tmp),
            JWT_SECRET_KEY=JWT_SECRET,
            EXPORT_DIR=str(self.tmp / "exports"),
            # Floods of one organization's jobs are what these tests submit: its caps are not tested here.
            JOB_MAX_ACTIVE_SNAPSHOTS_PER_ORG="100000",
            JOB_MAX_ACTIVE_CACHE_REFRESHES_PER_ORG="100000",
            **self.extra_env,
        )

    def _log(self, name: str) -> Any:
        return open(self.tmp / f"{name}.log", "ab")

    def start_web(self) -> Web:
        port = free_port()
        with self._log("web") as log:
            proc = subprocess.Popen(
                [*GUNICORN, "--bind", f"127.0.0.1:{port}", "webapp:create_app()"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        deadline = time.monotonic() + 30
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {self.tmp / 'web.log'}")
            time.sleep(0.1)
        self.web = Web(f"http://127.0.0.1:{port}", proc)
        return self.web

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A prefork worker in its own process group (so the whole of it can be killed at once)."""
        hostname = f"faults-{secrets.token_hex(3)}@localhost"
        with self._log("worker") as log:
            proc = subprocess.Popen(
                [*CELERY_WORKER, "--queues", QUEUES, "--concurrency", "2", "--hostname", hostname],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        client = redis.Redis.from_url(self.redis_url)
        _until(
            lambda: proc.poll() is None and client.zscore("an:ops:workers", hostname) is not None,
            timeout=60,
            what=f"worker {hostname} ready (see {self.tmp / 'worker.log'})",
            fail=lambda: proc.poll() is not None,
        )
        self.worker = proc
        return proc

    @contextlib.contextmanager
    def supervised(self, restart_delay: float) -> Iterator[list[float]]:
        """Restart the worker whenever it exits, `restart_delay` s later, as systemd or Kubernetes would.

        Yields the list of the times it had to, for the test to report.
        """
        restarts: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.2):
                if self.worker is None or self.worker.poll() is None:
                    continue
                died = time.monotonic()
                restarts.append(died)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.worker.pid, signal.SIGKILL)  # pool processes it left behind
                stop.wait(restart_delay)
                while not stop.is_set():
                    try:
                        self.start_worker()
                        break
                    except (AssertionError, redis.RedisError):
                        stop.wait(0.5)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield restarts
        finally:
            stop.set()
            thread.join(timeout=90)

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group: the parent and every pool child, at once."""
        assert self.worker is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _until(
    predicate: Callable[[], Any],
    timeout: float = 20,
    what: str = "condition",
    fail: Callable[[], bool] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if fail is not None and fail():
            break
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class Load:
    """Threads calling the API in a loop until stopped; every answer is kept."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def add(self, call: Callable[[int], Answer | None], pause: float = 0.02) -> None:
        def loop() -> None:
            for i in itertools.count():
                if self._stop.is_set():
                    return
                answer = call(i)
                if answer is not None:
                    with self._lock:
                        self.answers.append(answer)
                time.sleep(pause)

        thread = threading.Thread(target=loop, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.answers


def _assert_no_server_errors(answers: list[Answer]) -> None:
    """Every call was answered; a 5xx is only ever a 503 that says so in JSON, with Retry-After."""
    assert answers
    for answer in answers:
        assert answer.status != 0, f"{answer.label}: no answer: {answer.body}"
        if answer.status >= 500:
            assert answer.status == 503, (answer.label, answer.status, answer.body)
            assert answer.body["error"]["code"] in ("service_unavailable", "database_unavailable"), (
                answer.body
            )
            assert answer.body["error"]["message"], answer.body
            assert int(answer.headers["Retry-After"]) > 0, answer.headers


def _wait_final(web: Web, token: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        answer = web.call("GET", f"/api/v1/jobs/{job_id}", token)
        return answer.body if answer.status == 200 and answer.body["state"] in FINAL else None

    return _until(final, timeout=timeout, what=f"job {job_id} to finish")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A Redis of this test alone (append-only file on, as in production)."""
    from devstack.redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def factory(database_url: str, redis_url: str, **extra_env: str) -> Stack:
        stack = Stack(database_url, redis_url, tmp_path, extra_env)
        made.append(stack)
        return stack

    yield factory
    for stack in made:
        stack.stop()


# --- a. a worker killed in the middle of an export -----------------------------


@contextlib.contextmanager
def _exports_locked(engine: Engine) -> Iterator[None]:
    """A SHARE lock on exports: an export writes its file, then waits to record it until the block ends."""
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE exports IN SHARE MODE"))
        try:
            yield
        finally:
            conn.rollback()


def _recording_blocked(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query ILIKE '%INSERT INTO exports%'"
                )
            ).scalar()
        )


def _job_row(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT state, attempts FROM jobs WHERE id = :id"), {"id": job_id}).one()
    return dict(row._mapping)


def _export_rows(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, path, rows, sha256 FROM exports WHERE job_id = :id"), {"id": job_id}
        ).all()
    return [dict(r._mapping) for r in rows]


def _succeeded_events(redis_url: str, org_id: int, job_id: str) -> int:
    client = redis.Redis.from_url(redis_url)
    count = 0
    for _, fields in client.xrange(f"an:events:{org_id}"):
        if fields[b"type"] == b"job_update":
            data = json.loads(fields[b"data"])
            count += data["job_id"] == job_id and data["state"] == "succeeded"
    return count


def _export_while_recording_is_blocked(
    web: Web, token: str, engine: Engine, fmt: str, kill: Callable[[str], None]
) -> str:
    """Submit an export, let it write its file, and call `kill(job_id)` while it waits to record it."""
    with _exports_locked(engine):
        answer = web.call("POST", "/api/v1/analytics/export", token, {"format": fmt, "dataset": "tickets"})
        assert answer.status == 202, answer.body
        job_id = answer.body["job_id"]
        _until(lambda: _job_row(engine, job_id) == {"state": "running", "attempts": 1}, what="export running")
        _until(lambda: _recording_blocked(engine), what="export written, waiting to record it")
        kill(job_id)
    return job_id


def _assert_exported_once(
    web: Web, token: str, engine: Engine, redis_url: str, org_id: int, job_id: str, tickets: int
) -> Path:
    done = _wait_final(web, token, job_id, timeout=60)
    assert (done["state"], done["attempts"]) == ("succeeded", 2), done
    rows = _export_rows(engine, job_id)
    assert len(rows) == 1, rows
    path = Path(rows[0]["path"])
    assert rows[0]["rows"] == tickets
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rows[0]["sha256"] == done["result"]["sha256"]
    assert _succeeded_events(redis_url, org_id, job_id) == 1
    return path


def test_worker_killed_mid_export_exports_exactly_once(
    make_live_tenant, live_app, services, own_redis, stacks
):
    tenant = make_live_tenant("Faults")
    tickets = 3000
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
        seeding.seed_tickets(conn, org_id=tenant.org_id, tickets=tickets, days=20, seed=11)
    engine = live_app.extensions["db_engine"]
    # The broker's own redelivery (visibility timeout) stays at its default of an hour: the job of a
    # killed worker must not wait for it.
    stack = stacks(services.database_url, own_redis.url)
    web = stack.start_web()
    stack.start_worker()
    token = tenant.viewer.token
    results = Celery(broker=own_redis.url, backend=own_redis.url)

    load = Load()
    watched: list[str] = []
    load.add(lambda i: web.call("GET", "/api/v1/health"), pause=0.1)
    load.add(lambda i: web.call("GET", "/api/v1/tickets?limit=5", token), pause=0.1)
    load.add(lambda i: web.call("GET", f"/api/v1/jobs/{watched[-1]}", token) if watched else None, pause=0.1)

    def kill_pool_child(job_id: str) -> None:
        watched.append(job_id)
        pid = _until(lambda: running_pool_pid(results, job_id), what="the pool process running the job")
        assert stack.worker is not None
        children = {c.pid for c in psutil.Process(stack.worker.pid).children()}
        assert pid in children, (pid, children)
        os.kill(pid, signal.SIGKILL)

    def kill_whole_worker(job_id: str) -> None:
        watched.append(job_id)
        stack.kill_worker()

    try:
        # 1. The pool process dies: its parent gives the message back at once, the rerun records it once.
        first = _export_while_recording_is_blocked(web, token, engine, "csv", kill_pool_child)
        first_file = _assert_exported_once(web, token, engine, own_redis.url, tenant.org_id, first, tickets)
        assert stack.worker.poll() is None

        # 2. The whole worker dies (as with its machine): its message stays unacknowledged in Redis
        # for the visibility timeout, but the job's run lock went with its database connection, so
        # the next worker to start (here at once, as a supervisor does) sends the job again.
        second = _export_while_recording_is_blocked(web, token, engine, "json", kill_whole_worker)
        assert _job_row(engine, second) == {"state": "running", "attempts": 1}
        restarted = time.monotonic()
        stack.start_worker()
        second_file = _assert_exported_once(web, token, engine, own_redis.url, tenant.org_id, second, tickets)
        assert time.monotonic() - restarted < 60
    finally:
        answers = load.stop()

    _assert_no_server_errors(answers)
    assert not [a for a in answers if a.status >= 500]
    print(f"worker kills: 2 exports survived (pool child, whole worker); {len(answers)} API calls, no 5xx")
    # One file per export, and nothing else left behind (no temporary file of a killed attempt).
    files = {p for p in (stack.tmp / "exports").rglob("*") if p.is_file()}
    assert files == {first_file, second_file}
    for job_id, path in ((first, first_file), (second, second_file)):
        link = web.call("GET", f"/api/v1/jobs/{job_id}", token).body["result"]["download_url"]
        req = urllib.request.Request(web.base_url + link, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=20) as response:
            assert response.read() == path.read_bytes()


# --- b. Redis restarted during a stream of job submissions --------------------


def test_redis_restart_during_job_submissions_loses_nothing(
    make_live_tenant, live_app, services, own_redis, stacks
):
    tenant = make_live_tenant("RedisFault")
    engine = live_app.extensions["db_engine"]
    stack = stacks(services.database_url, own_redis.url, **FAST_REDELIVERY)
    web = stack.start_web()
    stack.start_worker()
    admin, viewer = tenant.admin.token, tenant.viewer.token
    assert web.call("POST", "/api/v1/tickets", tenant.agent.token, {"priority": "high"}).status == 201

    first_day = date(2025, 1, 1)
    days = itertools.count()
    day_lock = threading.Lock()

    def snapshot(_: int) -> Answer:
        with day_lock:
            day = first_day + timedelta(days=next(days))
        return web.call(
            "POST", "/api/v1/analytics/snapshots", admin, {"type": "daily", "date": day.isoformat()}
        )

    # Celery's worker may exit on losing its broker (a kombu race when it closes the lost connection:
    # "Unrecoverable error: AttributeError ... 'hostname'"), so it runs supervised as in production.
    # The restart waits out the visibility timeout: a starting worker sweeps abandoned messages once.
    with stack.supervised(restart_delay=VISIBILITY_TIMEOUT + 0.5) as restarts:
        load = Load()
        for _ in range(3):
            load.add(snapshot, pause=0.05)
        load.add(lambda i: web.call("POST", "/api/v1/analytics/refresh-cache", admin), pause=0.1)
        reads = Load()
        for _ in range(2):
            reads.add(lambda i: web.call("GET", SERIES, viewer), pause=0.05)
        try:
            time.sleep(2)
            own_redis.stop()
            outage_started = time.monotonic()
            time.sleep(3)
            own_redis.start()
            outage_ended = time.monotonic()
            time.sleep(3)
        finally:
            submissions = load.stop()
            answers = reads.stop()
        accepted = {a.body["job_id"] for a in submissions if a.status == 202}
        # Every accepted job ends, and succeeds. A message the worker held unacknowledged when the
        # connection dropped comes back at its first sweep past the visibility timeout; one it had
        # popped but not yet recorded is gone, and beat's maintenance.requeue_lost_jobs sends it again
        # (run here every few seconds instead of on its schedule).
        requeued = _finish_all(web, admin, accepted, own_redis.url, timeout=90)

    _assert_no_server_errors(submissions + answers)
    assert {a.status for a in answers} == {200}, {a.status for a in answers}
    assert {a.status for a in submissions} <= {202, 503}
    during = [a for a in submissions if outage_started + 0.5 < a.at < outage_ended - 0.5]
    assert during
    assert all(a.status == 503 for a in during), [a.status for a in during]
    assert len(accepted) > 10

    # No job row is left waiting for a task that never comes.
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id::text, state, error FROM jobs WHERE org_id = :o"), {"o": tenant.org_id}
        ).all()
        per_day = conn.execute(
            text(
                "SELECT snapshot_date, count(*) FROM analytics_snapshots WHERE org_id = :o "
                "GROUP BY snapshot_date HAVING count(*) > 1"
            ),
            {"o": tenant.org_id},
        ).all()
    states = {row.id: row.state for row in rows}
    assert accepted <= set(states)
    assert all(state in FINAL for state in states.values()), states
    # A row that was never accepted is one the queue refused, marked failed in the same request.
    for row in rows:
        if row.id not in accepted:
            assert row.state == "failed", row
            assert "queue is unavailable" in row.error["message"], row
            assert row.error["code"] == "queue_unavailable", row
    assert per_day == []
    refused = sum(a.status == 503 for a in submissions)
    print(
        f"redis restart: {len(accepted)} jobs accepted and succeeded, {refused} submissions refused "
        f"with 503, {len(answers)} analytics reads all 200; worker restarted {len(restarts)} times, "
        f"{len(requeued)} lost messages sent again"
    )


def _finish_all(web: Web, token: str, job_ids: set[str], broker_url: str, timeout: float) -> set[str]:
    """Wait for every job to end, running the lost-message sweep every few seconds; the jobs it resent."""
    beat = Celery(broker=broker_url, backend=broker_url)
    requeued: set[str] = set()
    pending = set(job_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        sweep = beat.send_task("maintenance.requeue_lost_jobs", kwargs={"older_than": 5}, queue="default")
        # The supervised worker may be restarting (it waits out the visibility timeout): without an
        # answer the jobs are still polled below, and the next sweep goes out in a few seconds.
        with contextlib.suppress(CeleryTimeoutError):
            requeued.update(sweep.get(timeout=10)["requeued"])
        sweep_at = time.monotonic() + 5
        while pending and time.monotonic() < sweep_at:
            for job_id in list(pending):
                answer = web.call("GET", f"/api/v1/jobs/{job_id}", token)
                if answer.status == 200 and answer.body["state"] in FINAL:
                    assert answer.body["state"] == "succeeded", answer.body
                    pending.discard(job_id)
            time.sleep(0.2)
    assert not pending, f"{len(pending)} accepted jobs never finished: {sorted(pending)[:5]}"
    return requeued


def test_a_job_whose_message_was_lost_is_sent_again(celery_worker, make_live_tenant, live_app):
    tenant = make_live_tenant("LostMessage")
    session = live_app.extensions["db_sessionmaker"]()
    params = {"snapshot_type": "daily", "snapshot_date": "2026-01-07"}
    job = Job(
        org_id=tenant.org_id,
        kind="snapshot",
        params=params,
        params_hash=jobs.params_hash("snapshot", params),
        state="queued",
        updated_at=utcnow() - timedelta(minutes=10),
    )
    session.add(job)
    session.commit()  # and never enqueued: as if the broker had lost its message
    job_id = str(job.id)
    session.close()
    celery = live_app.extensions["celery"]
    outcome = celery.send_task("maintenance.requeue_lost_jobs", kwargs={"older_than": 60}).get(timeout=30)
    # Sent again by this sweep, or by one just before it (a worker of an earlier test sweeps as it
    # starts, in beat's `periodic` queue, which this session's worker takes): either way it runs once.
    if job_id not in outcome["requeued"]:
        # Another sweep took it first: it stamped the job as it sent it again (updated_at, from ten
        # minutes ago to now), or the job has run since.
        stamped = db_scalar(
            live_app.extensions["db_engine"],
            "SELECT state <> 'queued' OR updated_at > now() - interval '1 minute' FROM jobs WHERE id = :id",
            id=job_id,
        )
        assert stamped, outcome
    done = wait_for_job(tenant.viewer, job_id)
    assert (done["state"], done["attempts"]) == ("succeeded", 1)
    # Once it has run, the sweep leaves it alone.
    again = celery.send_task("maintenance.requeue_lost_jobs", kwargs={"older_than": 60}).get(timeout=30)
    assert job_id not in again["requeued"]


# --- c. PostgreSQL restarted under load ----------------------------------------


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A PostgreSQL cluster of this test alone, migrated to head."""
    from devstack.postgres import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "postgres")
    pg.start()
    pg.wait_ready()
    pg.ensure_database("faults")
    url = pg.url("faults")
    upgrade(url)
    yield pg, url
    pg.stop()


def _tenant_in(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    suffix = secrets.token_hex(3)
    with engine.begin() as conn:
        org_id = conn.execute(
            text("INSERT INTO organizations (name, timezone) VALUES (:n, 'UTC') RETURNING id"),
            {"n": f"PG fault {suffix}"},
        ).scalar_one()
        users = {}
        for role in ("viewer", "agent", "admin"):
            email = f"{role}-{suffix}@pg-fault.test"
            conn.execute(
                text("INSERT INTO users (org_id, email, password_hash, role) VALUES (:o, :e, :p, :r)"),
                {"o": org_id, "e": email, "p": hash_password("s3cret-pass"), "r": role},
            )
            users[role] = email
    engine.dispose()
    return {"org_id": org_id, "users": users}


def test_postgres_restart_under_load_loses_no_acknowledged_write(own_postgres, own_redis, stacks):
    pg, url = own_postgres
    tenant = _tenant_in(url)
    stack = stacks(url, own_redis.url)
    web = stack.start_web()
    stack.start_worker()
    tokens = {}
    for role, email in tenant["users"].items():
        login = web.call("POST", "/api/v1/auth/login", body={"email": email, "password": "s3cret-pass"})
        assert login.status == 200, login.body
        tokens[role] = login.body["access_token"]

    def write(i: int) -> Answer:
        subject = f"pg-fault {threading.get_ident()} {i}"
        answer = web.call(
            "POST", "/api/v1/tickets", tokens["agent"], {"subject": subject, "priority": "high"}
        )
        answer.label = subject
        return answer

    load = Load()
    for _ in range(3):
        load.add(write, pause=0.02)
    load.add(lambda i: web.call("GET", "/api/v1/tickets?limit=5", tokens["viewer"]), pause=0.05)
    load.add(
        lambda i: web.call(
            "GET", "/api/v1/analytics/time-series/ticket_count?granularity=daily", tokens["viewer"]
        ),
        pause=0.05,
    )
    load.add(lambda i: web.call("GET", "/api/v1/health"), pause=0.2)
    try:
        time.sleep(2)
        pg.stop()
        outage_started = time.monotonic()
        time.sleep(3)
        pg.start()
        pg.wait_ready()
        outage_ended = time.monotonic()
        time.sleep(3)
    finally:
        answers = load.stop()

    _assert_no_server_errors(answers)
    unavailable = [a for a in answers if a.status == 503]
    assert unavailable, "the outage was never seen"
    assert {a.body["error"]["code"] for a in unavailable} <= {"database_unavailable", "service_unavailable"}
    assert any(a.body["error"]["message"].startswith("database unavailable") for a in unavailable)
    during = [
        a
        for a in answers
        if outage_started + 0.5 < a.at < outage_ended - 0.5 and a.label != "GET /api/v1/health"
    ]
    assert during
    # Refused, but for analytics answers a web process still holds (a cache hit needs no database).
    cached = [a for a in during if a.status == 200 and (a.body.get("meta") or {}).get("cache") == "hit"]
    assert all(a.status == 503 for a in during if a not in cached), {a.status for a in during}
    assert any(a.status == 503 for a in during)
    writes = [a for a in answers if a.label.startswith("pg-fault")]
    assert {a.status for a in writes} <= {201, 503}
    acknowledged = {a.body["id"]: a.label for a in writes if a.status == 201}
    after = [a for a in writes if a.at > outage_ended + 1]
    assert after
    assert all(a.status == 201 for a in after)

    # Every acknowledged write is there, once; nothing was written twice.
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT id, subject FROM tickets WHERE org_id = :o"), {"o": tenant["org_id"]}
            ).all()
        )
    engine.dispose()
    missing = {i: s for i, s in acknowledged.items() if stored.get(i) != s}
    assert not missing, missing
    assert len(set(stored.values())) == len(stored)

    # Everything works again, jobs included: the worker found the database again too.
    listed = web.call("GET", "/api/v1/tickets?limit=1", tokens["viewer"])
    assert listed.status == 200
    job = web.call(
        "POST", "/api/v1/analytics/snapshots", tokens["admin"], {"type": "daily", "date": "2026-01-05"}
    )
    assert job.status == 202, job.body
    assert _wait_final(web, tokens["admin"], job.body["job_id"])["state"] == "succeeded"
    print(
        f"postgres restart: {len(acknowledged)} acknowledged writes all stored, {len(unavailable)} answers "
        f"503 during the outage, {len(answers)} calls, no other 5xx"
    )


def test_a_socket_upgrade_answers_503_while_postgres_is_down_and_opens_once_it_is_back(
    own_postgres, own_redis, stacks
):
    """The upgrade asks the database about a token Redis holds no answer for: 503 with
    database_unavailable while PostgreSQL is down, never 500, and the socket opens once it is back. A
    socket already open stays, and a message needing the database is an error saying so."""
    import websocket

    pg, url = own_postgres
    tenant = _tenant_in(url)
    web = stacks(url, own_redis.url).start_web()
    login = web.call(
        "POST", "/api/v1/auth/login", body={"email": tenant["users"]["viewer"], "password": "s3cret-pass"}
    )
    assert login.status == 200, login.body
    token = login.body["access_token"]
    socket_url = web.base_url.replace("http://", "ws://") + f"/api/v1/ws/analytics/{tenant['org_id']}"

    def upgrade(bearer: str = token) -> websocket.WebSocket:
        return websocket.create_connection(socket_url, header=[f"Authorization: Bearer {bearer}"], timeout=20)

    # A socket open before, on a token of its own (a process remembers a token it has verified, so
    # the upgrades below would not ask the database for it): a message that needs the database is an
    # error saying so, and it stays open.
    other = web.call(
        "POST", "/api/v1/auth/login", body={"email": tenant["users"]["viewer"], "password": "s3cret-pass"}
    )
    assert other.status == 200, other.body
    opened = upgrade(other.body["access_token"])
    assert json.loads(opened.recv())["type"] == "connected"
    redis.Redis.from_url(own_redis.url).flushall()  # no cached answer: the database must be asked
    pg.stop()
    try:
        opened.send(
            json.dumps({"type": "subscribe", "metrics": ["response_time"], "filters": {"channel": ["chat"]}})
        )
        while (answer := json.loads(opened.recv()))["type"] != "error":
            pass
        assert "database is unavailable" in answer["data"]["message"], answer
        opened.send(json.dumps({"type": "ping"}))
        while json.loads(opened.recv())["type"] != "pong":
            pass
        opened.close()
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            upgrade()
        assert refused.value.status_code == 503
        assert json.loads(refused.value.resp_body)["error"]["code"] == "database_unavailable"
    finally:
        pg.start()
        pg.wait_ready()
    deadline = time.monotonic() + 20
    statuses = []
    while True:
        try:
            ws = upgrade()
            break
        except websocket.WebSocketBadStatusException as exc:
            statuses.append(exc.status_code)
        assert set(statuses) <= {503}, statuses
        assert time.monotonic() < deadline, "the socket did not open once PostgreSQL was back"
        time.sleep(0.5)
    assert json.loads(ws.recv())["type"] == "connected"
    ws.close()
