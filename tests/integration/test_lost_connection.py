"""A database connection the server drops after a request's last statement (a restart, a failover)
costs that request nothing: closing its session lets the dead connection go, and the pool never
hands it out again."""

from __future__ import annotations

import time

from sqlalchemy import text

from webapp.infra.db import get_session
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
