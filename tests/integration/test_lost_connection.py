"""A database connection the server drops after a request's last statement (a restart, a failover)
costs that request nothing: closing its session lets the dead connection go, and the pool never
hands it out again."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import text

from webapp.infra.db import get_session, make_engine
from webapp.tickets import reads as domain


def _terminate(engine, pid: int) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        deadline = time.monotonic() + 5
        while conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.02)


def test_connection_dropped_after_the_last_statement_still_answers(
    live_app, make_live_tenant, db_engine, monkeypatch
):
    tenant = make_live_tenant()
    assert tenant.agent.post("/api/v1/tickets", json={"priority": "high"}).status_code == 201
    original = domain.list_tickets
    killed: list[int] = []

    def list_then_lose_the_connection(*args, **kwargs):
        answer = original(*args, **kwargs)
        pid = get_session().execute(text("SELECT pg_backend_pid()")).scalar()
        _terminate(db_engine, pid)  # the read transaction is still open: closing must roll it back
        killed.append(pid)
        return answer

    monkeypatch.setattr(domain, "list_tickets", list_then_lose_the_connection)
    listed = tenant.viewer.get("/api/v1/tickets")
    assert killed
    assert listed.status_code == 200, listed.get_json()
    assert len(listed.get_json()["items"]) == 1

    monkeypatch.setattr(domain, "list_tickets", original)
    for _ in range(3):  # the pool does not hand out the dead connection again
        again = tenant.viewer.get("/api/v1/tickets")
        assert again.status_code == 200, again.get_json()
        assert len(again.get_json()["items"]) == 1


def test_pooled_connections_the_server_ended_while_idle_are_replaced_at_checkout(
    live_app, make_live_tenant, db_engine
):
    """Every idle connection of the pool is ended by the server (as a restart does): the next requests
    get live ones, none of them fails. The check at checkout costs no round trip while the socket has
    nothing to read, and pings only a connection the server wrote to (its goodbye, then end of stream)."""
    tenant = make_live_tenant()
    assert tenant.agent.post("/api/v1/tickets", json={"priority": "high"}).status_code == 201
    # From a connection of its own, outside the pool: every pooled one is ended.
    url = db_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
        assert ended, "the pool holds idle connections"
        deadline = time.monotonic() + 5
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the backends did not end"
            time.sleep(0.02)
    for _ in range(5):
        listed = tenant.viewer.get("/api/v1/tickets")
        assert listed.status_code == 200, listed.get_json()
        assert len(listed.get_json()["items"]) == 1


def test_a_healthy_pooled_connection_is_checked_out_without_a_round_trip(db_engine):
    """Nothing is sent at checkout: the server's record of the connection's last statement is still
    the one sent before it went back to the pool."""
    engine = make_engine(db_engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            conn.execute(text("SELECT 'last statement before the pool' AS marker"))
        with engine.connect() as checked_out, db_engine.connect() as other:
            assert checked_out.connection.driver_connection.info.backend_pid == pid  # the same one
            last = other.execute(text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
            assert "last statement before the pool" in last.scalar()
    finally:
        engine.dispose()
