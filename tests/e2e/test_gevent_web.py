"""One gevent web worker: hundreds of sockets of one organization, and a slow query stalling nothing.

The web process runs with gunicorn.conf.py (gevent workers) and a single worker, so every socket and
every request below shares one process and one event loop: whatever blocked it would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
import websocket

from devstack.ports import free_port, port_open
from tests.conftest import ROOT, TEST_INSTANCE, Services, process_env
from tests.e2e.conftest import Web

# More than the old caps of one process (48 sockets, 32 per organization).
SOCKETS = 300
WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


def _start_worker(services: Services, log_name: str, launcher: tuple[str, ...] = ()) -> tuple[Web, Any]:
    """gunicorn as the Procfile runs it, with one worker (started through `launcher`, if given)."""
    port = free_port()
    log_path = TEST_INSTANCE / log_name
    with open(log_path, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(
            [
                *(launcher or (sys.executable,)),
                *("-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")),
                *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--graceful-timeout", "2"),
                "webapp:create_app()",
            ],
            cwd=ROOT,
            env=process_env(services),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    web = Web(f"http://127.0.0.1:{port}", port, log_path, log_start)
    deadline = time.monotonic() + 60
    while not (port_open(port) and web.answers()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gunicorn did not start; see {log_path}")
        time.sleep(0.1)
    return web, proc


def _stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def one_worker(services: Services) -> Iterator[Web]:
    """gunicorn as the Procfile runs it, with one worker."""
    web, proc = _start_worker(services, "web-one-worker.log")
    yield web
    _stop(proc)


# Past FD_SETSIZE: a worker holding this many sockets opens its database connections above 1024.
CROWDED_FDS = 1100


# Takes the descriptors 3 to CROWDED_FDS + 2, then runs the rest of its command line as Python does.
TAKE_DESCRIPTORS = textwrap.dedent(
    """
    import os
    import sys

    for _ in range(int(sys.argv[1])):
        os.set_inheritable(os.open(os.devnull, os.O_RDONLY), True)
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
    """
)


@pytest.fixture(scope="module")
def crowded_worker(services: Services) -> Iterator[Web]:
    """One gevent worker whose lowest CROWDED_FDS descriptors are taken, as a worker holding that
    many sockets has them: every database connection it opens gets a descriptor above 1024."""
    launcher = (sys.executable, "-c", TAKE_DESCRIPTORS, str(CROWDED_FDS))
    web, proc = _start_worker(services, "web-crowded-worker.log", launcher)
    yield web
    _stop(proc)


def _open(web: Web, org_id: int, token: str) -> tuple[websocket.WebSocket, dict[str, Any]]:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{web.port}/api/v1/ws/analytics/{org_id}",
        header=[f"Authorization: Bearer {token}"],
        timeout=20,
    )
    hello = json.loads(ws.recv())
    assert hello["type"] == "connected", hello
    return ws, hello


def _next_of(ws: websocket.WebSocket, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        message = json.loads(ws.recv())
        if message["type"] == kind:
            return message


def test_hundreds_of_sockets_of_one_organization_each_receive_the_same_update(one_worker, make_live_tenant):
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    sockets = []
    try:
        for _ in range(SOCKETS):
            ws, hello = _open(one_worker, tenant.org_id, token)
            sockets.append((ws, hello["data"]["server_pid"]))
        assert len({pid for _, pid in sockets}) == 1, "one worker holds them all"

        status, ticket = one_worker.request(
            "POST", "/api/v1/tickets", tenant.users["agent"]["token"], {"priority": "high"}
        )
        assert status == 201, ticket
        updates = []
        for ws, _ in sockets:
            update = _next_of(ws, "metric_update")
            assert update["data"]["ticket_id"] == ticket["id"]
            updates.append(update)
        # The same event, once, on every socket: one stream entry, relayed as it was made.
        assert len({json.dumps(u, sort_keys=True) for u in updates}) == 1
        assert updates[0]["organization_id"] == tenant.org_id

        # Every socket still answers its own pings.
        for ws, _ in sockets[:: SOCKETS // 10]:
            ws.send(json.dumps({"type": "ping"}))
            assert _next_of(ws, "pong", timeout=5)["organization_id"] == tenant.org_id
    finally:
        for ws, _ in sockets:
            ws.close()


def test_a_request_waiting_on_the_database_stalls_neither_requests_nor_sockets(
    one_worker, make_live_tenant, services
):
    tenant = make_live_tenant()
    agent = tenant.users["agent"]["token"]
    status, ticket = one_worker.request("POST", "/api/v1/tickets", agent, {"priority": "low"})
    assert status == 201
    ws, _ = _open(one_worker, tenant.org_id, tenant.users["viewer"]["token"])
    url = services.database_url.replace("+psycopg", "")
    answer: dict[str, Any] = {}

    def patch() -> None:
        started = time.monotonic()
        answer["status"], answer["body"] = one_worker.request(
            "PATCH", f"/api/v1/tickets/{ticket['id']}", agent, {"priority": "urgent"}
        )
        answer["seconds"] = time.monotonic() - started

    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as observer:
        # The ticket's row locked elsewhere: the PATCH waits inside PostgreSQL, its driver waiting
        # for an answer exactly as it would for a slow query.
        holder.execute("SELECT id FROM tickets WHERE id = %s FOR UPDATE", (ticket["id"],))
        writer = threading.Thread(target=patch, daemon=True)
        writer.start()
        deadline = time.monotonic() + 10
        while not observer.execute(WAITING_ON_A_LOCK).fetchone()[0]:
            assert time.monotonic() < deadline, "the PATCH never reached the lock"
            time.sleep(0.05)

        # Meanwhile the same process answers requests that use the database too, and the socket.
        held_from = time.monotonic()
        for _ in range(10):
            started = time.monotonic()
            status, health = one_worker.request("GET", "/api/v1/health", tenant.users["admin"]["token"])
            assert status in (200, 503), health
            assert health["database"]["ok"], health
            assert time.monotonic() - started < 1.0
        started = time.monotonic()
        ws.send(json.dumps({"type": "ping"}))
        _next_of(ws, "pong", timeout=2)
        assert time.monotonic() - started < 1.0
        assert writer.is_alive(), "the PATCH did not wait"
        time.sleep(max(0.0, 1.0 - (time.monotonic() - held_from)))
        holder.rollback()

    writer.join(20)
    assert answer["status"] == 200, answer
    assert answer["seconds"] >= 1.0
    update = _next_of(ws, "metric_update")
    assert update["data"]["ticket_id"] == ticket["id"]
    ws.close()


COOPERATIVE_PG_SLEEP = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import sys
    import time

    import gevent
    from sqlalchemy import text

    from webapp.infra.engines import make_engine

    engine = make_engine(sys.argv[1])
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # the pool's connection made before the clock starts

    def slow() -> float:
        started = time.monotonic()
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(1.5)"))
        return time.monotonic() - started

    sleeper = gevent.spawn(slow)
    ticks = 0
    while not sleeper.ready():
        gevent.sleep(0.01)
        ticks += 1
    print(ticks, sleeper.get())
    """
)


def test_psycopg_waits_cooperatively_under_gevent(services):
    """pg_sleep in one greenlet; another keeps running (psycopg picks a wait gevent has patched)."""
    out = subprocess.run(
        [sys.executable, "-c", COOPERATIVE_PG_SLEEP, services.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ticks, slept = out.stdout.split()
    assert float(slept) >= 1.5
    # About 150 ticks of 10 ms while the query sleeps; a blocking wait would allow none.
    assert int(ticks) >= 50, out.stdout


HIGH_DESCRIPTOR_POOL = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import os
    import sys
    import time

    import psycopg
    from sqlalchemy import text

    from webapp.infra.engines import make_engine

    taken = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # as a worker's sockets take them
    engine = make_engine(sys.argv[1], pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        fd = conn.connection.dbapi_connection.fileno()
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with engine.connect() as conn:  # the pooled connection, checked at checkout
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == pid
    with psycopg.connect(sys.argv[1].replace("+psycopg", ""), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))  # while pooled: discarded, replaced
    time.sleep(0.2)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    print(fd)
    """
)


def test_pooled_connections_above_fd_setsize_are_checked_out_under_gevent(services):
    """A connection whose descriptor is past select()'s FD_SETSIZE is checked out, not refused twice
    ("This connection is closed"), and one the server ended is still replaced."""
    out = subprocess.run(
        [sys.executable, "-c", HIGH_DESCRIPTOR_POOL, services.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout) >= 1024


def _claims(token: str) -> dict[str, Any]:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def test_a_worker_with_its_database_connections_above_fd_setsize_admits_and_revokes_sockets(
    crowded_worker, make_live_tenant, services
):
    """The upgrade asks the database whether a token Redis knows nothing about was revoked, and
    the watch over open sockets asks it every few seconds: neither fails when the worker's database
    connections have descriptors above 1024 (as they do in a worker holding a thousand sockets)."""
    tenant = make_live_tenant()
    token = tenant.users["viewer"]["token"]
    client = redis.Redis.from_url(services.redis_url)
    claims = _claims(token)
    key = f"an:revoked:{claims['jti']}"
    client.delete(key)  # nothing cached: the upgrade asks the database
    ws, hello = _open(crowded_worker, tenant.org_id, token)
    assert len(os.listdir(f"/proc/{hello['data']['server_pid']}/fd")) > CROWDED_FDS

    # Revoked in the database only (the cached answer gone): the watch finds it there, and closes.
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (%s, to_timestamp(%s))",
            (claims["jti"], claims["exp"]),
        )
    client.delete(key)
    deadline = time.monotonic() + 15
    while True:
        assert time.monotonic() < deadline, "the socket outlived its revoked token"
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(frame.data[:2], "big") == 1008
    ws.close()

    # A revoked token is refused (401) at the upgrade, from the database, not answered 500.
    client.delete(key)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _open(crowded_worker, tenant.org_id, token)
    assert refused.value.status_code == 401
    log = crowded_worker.log_text()
    assert "This connection is closed" not in log
    assert "cannot check token revocation" not in log
