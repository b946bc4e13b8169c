"""Fixtures: real PostgreSQL and Redis (embedded unless TEST_DATABASE_URL / TEST_REDIS_URL), the app,
clients with tokens of fresh organizations, and a real Celery worker for job tests."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import exceptions as celery_exceptions
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from webapp import config, create_app
from webapp.core.vocabulary import QUEUES
from webapp.infra.migrations import upgrade
from webapp.models import Organization, User
from webapp.security.passwords import hash_password
from webapp.security.tokens import access_token_for

ROOT = Path(__file__).resolve().parent.parent
# Each pytest-xdist worker (`make test` runs two) has servers, a Celery worker, logs and files of its own.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
TEST_INSTANCE = ROOT / "instance" / (f"test-{_XDIST_WORKER}" if _XDIST_WORKER else "test")
JWT_SECRET = secrets.token_urlsafe(48)
PASSWORD = "s3cret-pass"


@dataclass
class Services:
    database_url: str
    redis_url: str
    redis_server: Any  # EmbeddedRedis, or None when TEST_REDIS_URL points elsewhere


def _fresh_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_abandoned(admin_url: str) -> None:
    """Drop test databases whose run (named by its pid) is gone."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'analytics_test_%'")
        ]
        for name in names:
            pid = name.rsplit("_", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """PostgreSQL with every migration applied and an empty Redis, for the whole session."""
    database_url = config.env("TEST_DATABASE_URL")
    redis_url = config.env("TEST_REDIS_URL")
    redis_server = None
    if database_url is None:
        from devstack.postgres import EmbeddedPostgres

        pg = EmbeddedPostgres(TEST_INSTANCE / "postgres", fast_unsafe=True)
        pg.start()
        pg.wait_ready()
        # One database per run, so concurrent runs on one machine never drop each other's.
        name = f"analytics_test_{os.getpid()}"
        admin = f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres"
        _drop_abandoned(admin)
        _fresh_database(admin, name)
        database_url = pg.url(name)
    database_url = config.normalize_database_url(database_url)
    if redis_url is None:
        from devstack.redis import EmbeddedRedis

        redis_server = EmbeddedRedis(TEST_INSTANCE / f"redis-{os.getpid()}")
        redis_server.start()
        redis_url = redis_server.url
    redis.Redis.from_url(redis_url).flushdb()
    upgrade(database_url)
    yield Services(database_url, redis_url, redis_server)
    if redis_server is not None:
        redis_server.stop()
        shutil.rmtree(redis_server.datadir, ignore_errors=True)
    if config.env("TEST_DATABASE_URL") is None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_config(services: Services) -> dict[str, Any]:
    settings = config.load()
    settings.update(
        TESTING=True,
        INSTANCE_PATH=str(TEST_INSTANCE),
        SQLALCHEMY_DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        BROKER_URL=services.redis_url,
        JWT_SECRET_KEY=JWT_SECRET,
        EXPORT_DIR=str(TEST_INSTANCE / "exports"),
        # Every test client signs in from 127.0.0.1: its failures across the suite are no flood
        # (tests/integration/test_auth_throttle.py sets its own limits).
        AUTH_MAX_FAILURES_PER_ADDRESS=1_000_000,
    )
    return settings


@pytest.fixture(scope="session")
def base_app(services: Services) -> Flask:
    return create_app(app_config(services))


@pytest.fixture(scope="session")
def db_engine(base_app: Flask) -> Engine:
    return base_app.extensions["db_engine"]


@pytest.fixture
def db_connection(db_engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    conn = db_engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def app(base_app: Flask, db_connection: Connection) -> Iterator[Flask]:
    """The app with every session joined to the test's outer transaction (rolled back after)."""
    original = base_app.extensions["db_sessionmaker"]
    base_app.extensions["db_sessionmaker"] = sessionmaker(
        bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    yield base_app
    base_app.extensions["db_sessionmaker"] = original


@pytest.fixture
def live_app(base_app: Flask) -> Flask:
    """The app committing for real: for tests where a worker or other threads must see the data."""
    return base_app


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    session = app.extensions["db_sessionmaker"]()
    yield session
    session.close()


@pytest.fixture
def real_session(base_app: Flask) -> Iterator[Session]:
    """A session on the database itself (not inside a rolled-back outer transaction), for tests over
    a module's committed tenant; what it leaves uncommitted is rolled back."""
    session = base_app.extensions["db_sessionmaker"]()
    yield session
    session.rollback()
    session.close()


class Api:
    """A test client that sends one user's bearer token and JSON bodies."""

    def __init__(self, client: FlaskClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        out.update(headers or {})
        return out

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers=self._headers(kw.pop("headers", None)), **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.put(path, json=json, headers=self._headers(kw.pop("headers", None)), **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, json=json, headers=self._headers(kw.pop("headers", None)), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self._headers(kw.pop("headers", None)), **kw)


@dataclass
class Tenant:
    """An organization with one user of each role and an Api for each."""

    org_id: int
    timezone: str
    users: dict[str, dict[str, Any]]
    apis: dict[str, Api]

    @property
    def admin(self) -> Api:
        return self.apis["admin"]

    @property
    def agent(self) -> Api:
        return self.apis["agent"]

    @property
    def viewer(self) -> Api:
        return self.apis["viewer"]


@functools.cache
def _password_hash() -> str:
    """The stored form of every test user's password: hashed once (a scrypt hash costs a tenth of a
    second of CPU, three users a tenant), a real hash that signing in checks as any other."""
    return hash_password(PASSWORD)


def _make_tenant(flask_app: Flask, name: str, timezone: str) -> Tenant:
    session = flask_app.extensions["db_sessionmaker"]()
    suffix = secrets.token_hex(4)
    org = Organization(name=f"{name} {suffix}", timezone=timezone)
    session.add(org)
    session.flush()
    users: dict[str, dict[str, Any]] = {}
    apis: dict[str, Api] = {}
    with flask_app.app_context():
        for role in ("viewer", "agent", "admin"):
            email = f"{role}-{suffix}@{name.lower().replace(' ', '-')}.test"
            user = User(org_id=org.id, email=email, password_hash=_password_hash(), role=role)
            session.add(user)
            session.flush()
            token = access_token_for(user)
            users[role] = {"id": user.id, "email": email, "password": PASSWORD, "token": token}
            apis[role] = Api(flask_app.test_client(), token)
    session.commit()
    session.close()
    return Tenant(org.id, timezone, users, apis)


@contextlib.contextmanager
def committed_tenant(
    flask_app: Flask, name: str, timezone: str
) -> Iterator[tuple[Tenant, Organization, Session]]:
    """A tenant whose data a module writes and commits once (through the session yielded with it),
    and which is deleted, with everything of its organization, when the block ends."""
    tenant = _make_tenant(flask_app, name, timezone)
    session = flask_app.extensions["db_sessionmaker"]()
    try:
        org = session.get(Organization, tenant.org_id)
        assert org is not None
        yield tenant, org, session
    finally:
        session.rollback()
        session.execute(delete(Organization).where(Organization.id == tenant.org_id))
        session.commit()
        session.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_tenant(app: Flask) -> Any:
    """Factory: a fresh organization (rolled back after the test) with viewer, agent and admin."""

    def factory(name: str = "Acme", timezone: str = "UTC") -> Tenant:
        return _make_tenant(app, name, timezone)

    return factory


@pytest.fixture
def tenant(make_tenant: Any) -> Tenant:
    return make_tenant()


@pytest.fixture
def make_live_tenant(live_app: Flask) -> Any:
    """Factory: a committed organization, visible to the worker."""

    def factory(name: str = "Live", timezone: str = "UTC") -> Tenant:
        return _make_tenant(live_app, name, timezone)

    return factory


@pytest.fixture
def make_org(app: Flask) -> Any:
    """Factory returning {"id", "timezone"} of a fresh organization in the test's transaction."""

    def factory(name: str = "Org", timezone: str = "UTC") -> dict[str, Any]:
        tenant = _make_tenant(app, name, timezone)
        return {"id": tenant.org_id, "timezone": timezone, "tenant": tenant}

    return factory


@contextlib.contextmanager
def scratch_database(services: Services, label: str) -> Iterator[str]:
    """The URL of a new, empty database on the suite's server, dropped afterwards (named by the run's
    pid, so two runs on one server never share it)."""
    url = make_url(services.database_url)
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    if url.password:
        admin += f" password={url.password}"
    name = f"analytics_{label}_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_env(services: Services, **extra: str) -> dict[str, str]:
    """The environment of a worker or web process serving the test services."""
    return dict(
        os.environ,
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        BROKER_URL=services.redis_url,
        INSTANCE_PATH=str(TEST_INSTANCE),
        JWT_SECRET_KEY=JWT_SECRET,
        EXPORT_DIR=str(TEST_INSTANCE / "exports"),
        # Webhook receivers in tests listen on 127.0.0.1; retries and give-ups fast enough to watch.
        WEBHOOK_ALLOW_PRIVATE="1",
        WEBHOOK_RETRY_DELAYS="0.5,1",
        WEBHOOK_MAX_FAILURES="2",
        WEBHOOK_TIMEOUT_SECONDS="3",
        **extra,
    )


@pytest.fixture(scope="session")
def celery_worker(services: Services, base_app: Flask) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process (prefork) on every queue, against the test database and Redis."""
    log_path = TEST_INSTANCE / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = process_env(services)
    hostname = f"test-{secrets.token_hex(3)}@localhost"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "--loglevel",
                "INFO",
                "--queues",
                ",".join(QUEUES),
                "--concurrency",
                "2",
                "--hostname",
                hostname,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis.from_url(services.redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.zscore("an:ops:workers", hostname) is not None:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early; see {log_path}")
        time.sleep(0.2)
    else:
        proc.terminate()
        raise RuntimeError(f"worker did not become ready; see {log_path}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def beat_process(services: Services, name: str, schedule: str) -> Iterator[None]:
    """A real Celery beat process while the block runs: `schedule` is Python that sets
    celery_app.conf.beat_schedule (celeryconfig, celery_app and flask_app are imported); its schedule
    file and log are named `name` under the test instance."""
    script = (
        "import celeryconfig\n"
        "from workers import celery_app, flask_app\n"
        f"{schedule}"
        f"celery_app.Beat(schedule={str(TEST_INSTANCE / name)!r}, loglevel='INFO').run()\n"
    )
    with open(TEST_INSTANCE / f"{name}.log", "ab") as log:
        beat = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=process_env(services),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            beat.terminate()
            beat.wait(timeout=20)


@pytest.fixture
def stoppable_redis(services: Services) -> Iterator[Any]:
    """The embedded Redis, which a test may stop; started again afterwards whatever happened."""
    if services.redis_server is None:
        pytest.skip("needs the embedded Redis, which the tests can stop and start")
    yield services.redis_server
    services.redis_server.start()


def wait_redis(url: str, timeout: float = 10) -> None:
    """Block until Redis at `url` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(0.1)
    raise AssertionError("Redis did not come back")


def wait_for_job(
    api: Api, job_id: str, timeout: float = 30, until: tuple[str, ...] = ("succeeded", "failed", "cancelled")
) -> dict[str, Any]:
    """Poll the job over REST until it reaches one of `until`."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        if body["state"] in until:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {body.get('state')} after {timeout}s")


def run_task(celery: Any, name: str, /, *, wait: float = 120, **kwargs: Any) -> Any:
    """Send the background task `name` with `kwargs` to the test worker and wait for its result. The
    worker's two slots may still hold an earlier test's jobs, so the wait is long; one that runs out
    says what the worker was busy with (its active and reserved tasks) instead of a bare timeout, and
    revokes the task so that it does not run later, inside another test."""
    result = celery.send_task(name, kwargs=kwargs or None)
    try:
        return result.get(timeout=wait)
    except celery_exceptions.TimeoutError:
        inspect = celery.control.inspect(timeout=2.0)
        busy = {"active": inspect.active(), "reserved": inspect.reserved()}
        result.revoke()
        raise AssertionError(f"{name} not done after {wait}s; the worker held {busy}") from None


def running_pool_pid(celery: Any, job_id: str) -> int | None:
    """The pid of the pool process running the task `job_id`, as its worker reports it (celery inspect
    active; the tests run one worker, whose answer ends the wait), or None while no worker runs it. (Job
    tasks keep no Celery result, so no STARTED state.)"""
    for tasks in (celery.control.inspect(timeout=1.0, limit=1).active() or {}).values():
        for task in tasks:
            if task.get("id") == job_id and task.get("worker_pid"):
                return int(task["worker_pid"])
    return None


def db_scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
