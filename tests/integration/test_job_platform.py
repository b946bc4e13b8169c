"""The job platform on a real prefork worker: every kind, progress, cancel, dedup, crashes and beat.

Long or stuck jobs come from the database, not from test hooks: a test holds a SHARE lock on the
table a job writes, so the job is running and cannot finish until the test lets it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from celery import Celery
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.conftest import (
    JWT_SECRET,
    ROOT,
    TEST_INSTANCE,
    Api,
    Services,
    db_scalar,
    run_task,
    running_pool_pid,
    wait_for_job,
    wait_redis,
)
from webapp.analytics import popular
from webapp.core.vocabulary import DERIVED_EVENT_TYPES
from webapp.jobs import submission as jobs
from webapp.jobs import worker_time
from webapp.models import Job
from webapp.models.jobs import Export

pytestmark = pytest.mark.worker


# --- helpers ----------------------------------------------------------------


def _until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _row(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT state, attempts, progress, result, error FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
    return dict(row._mapping)


def _running(engine: Engine, job_id: str, attempt: int) -> Callable[[], bool]:
    def check() -> bool:
        row = _row(engine, job_id)
        return row["state"] == "running" and row["attempts"] == attempt

    return check


@contextmanager
def _locked(engine: Engine, table: str) -> Iterator[None]:
    """Hold a SHARE lock: reads go on, every write to `table` waits until the block ends."""
    with engine.connect() as conn:
        conn.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
        try:
            yield
        finally:
            conn.rollback()


@contextmanager
def _share_held(engine: Engine, org_id: int, slots: int = 4) -> Iterator[None]:
    """Hold the organization's share slots (jobs.claim's advisory locks): its jobs stay queued, each
    delivery sent again FAIR_SHARE_DEFER_SECONDS later, until the block ends."""
    with engine.connect() as conn:
        for slot in range(slots):
            conn.execute(text("SELECT pg_advisory_lock(:o, :k)"), {"o": org_id, "k": -1 - slot})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.rollback()


def _blocked_writers(engine: Engine, table: str) -> int:
    return db_scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database() AND query ILIKE :pattern",
        pattern=f"%INSERT INTO {table}%",
    )


def _pool_child(celery: Celery, worker: subprocess.Popen[bytes], job_id: str) -> psutil.Process:
    """The prefork child running the job: the pid its worker reports, among the worker's children."""
    pid = _until(lambda: running_pool_pid(celery, job_id), what="the pool process running the job")
    children = {child.pid: child for child in psutil.Process(worker.pid).children()}
    assert pid in children, (pid, list(children))
    return children[pid]


def _job_events(services: Services, org_id: int, job_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(services.redis_url)
    out = []
    for _, fields in client.xrange(f"an:events:{org_id}"):
        if fields[b"type"] == b"job_update":
            data = json.loads(fields[b"data"])
            if data["job_id"] == job_id:
                out.append(data)
    return out


def _tickets(engine: Engine, org_id: int) -> int:
    return db_scalar(engine, "SELECT count(*) FROM tickets WHERE org_id = :o", o=org_id)


def _rows(n: int, *, start: datetime | None = None) -> list[dict[str, Any]]:
    base = start or datetime.now(UTC) - timedelta(days=3)
    rows = []
    for i in range(n):
        created = base + timedelta(minutes=i)
        row: dict[str, Any] = {
            "subject": f"ticket {i}",
            "priority": ("low", "normal", "high", "urgent")[i % 4],
            "channel": ("email", "chat", "web")[i % 3],
            "category": "billing" if i % 2 else "shipping",
            "created_at": created.isoformat(),
        }
        if i % 3 == 0:
            row["first_response_at"] = (created + timedelta(hours=1)).isoformat()
        if i % 5 == 0:
            row["resolved_at"] = (created + timedelta(hours=4)).isoformat()
        rows.append(row)
    return rows


@pytest.fixture
def import_app(live_app: Flask) -> Flask:
    return live_app


@pytest.fixture
def post_import(import_app: Flask) -> Callable[..., Any]:
    def post(api: Api, body: Any, content_type: str = "application/json", key: str | None = None) -> Any:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        client = Api(import_app.test_client(), api.token)
        headers = {"Authorization": f"Bearer {api.token}", "Content-Type": content_type}
        return client.client.post(
            "/api/v1/tickets/import", data=data, headers=headers | ({"Idempotency-Key": key} if key else {})
        )

    return post


@pytest.fixture
def engine(live_app: Flask) -> Engine:
    return live_app.extensions["db_engine"]


@pytest.fixture
def celery(live_app: Flask) -> Celery:
    return live_app.extensions["celery"]


# --- imports ----------------------------------------------------------------


def test_import_lifecycle_with_increasing_progress(
    celery_worker, make_live_tenant, post_import, engine, services
):
    tenant = make_live_tenant()
    response = post_import(tenant.agent, _rows(400))
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]

    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "succeeded", done
    assert done["kind"] == "import"
    assert done["result"]["imported"] == 400
    assert done["result"]["errors"] == []
    assert _tickets(engine, tenant.org_id) == 400
    # 400 created, 134 first responses, 80 resolutions: the events the API writes for back-fills; and
    # derived from the status histories, a +1 backlog step per ticket, a -1 per resolution and a
    # solve per resolution.
    primary = db_scalar(
        engine,
        "SELECT count(*) FROM ticket_events WHERE org_id = :o AND event_type <> ALL(:derived)",
        o=tenant.org_id,
        derived=list(DERIVED_EVENT_TYPES),
    )
    assert primary == 614
    everything = db_scalar(engine, "SELECT count(*) FROM ticket_events WHERE org_id = :o", o=tenant.org_id)
    assert everything == 614 + 400 + 80 + 80
    assert done["result"]["events"] == everything

    events = _job_events(services, tenant.org_id, job_id)
    assert events[0]["state"] == "queued"
    assert events[-1]["state"] == "succeeded"
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress)
    assert len({p for p in progress if 0 < p < 1}) >= 10
    # The write's end and the rollups are told too (progress stood at 0.5 for half an import's run).
    assert len({p for p in progress if 0.5 < p < 0.99}) >= 2, progress
    listed = tenant.viewer.get("/api/v1/tickets?limit=5&category=billing").get_json()["items"]
    assert len(listed) == 5


def test_import_ndjson_and_csv(celery_worker, make_live_tenant, post_import, engine):
    tenant = make_live_tenant(timezone="Europe/Berlin")
    ndjson = "\n".join(json.dumps(r) for r in _rows(3)) + "\n\n"
    csv_body = (
        "subject,status,priority,channel,category,assigned_to,sentiment_score,created_at\n"
        'From CSV,pending,high,phone,"returns, damaged",,0.25,2026-03-01T09:30:00\n'
        "Second,,,,,alice,,2026-03-01T10:00:00+00:00\n"
    )
    first = post_import(tenant.agent, ndjson, "application/x-ndjson")
    second = post_import(tenant.agent, csv_body, "text/csv; charset=utf-8")
    assert first.status_code == second.status_code == 202
    assert wait_for_job(tenant.viewer, first.get_json()["job_id"])["result"]["imported"] == 3
    assert wait_for_job(tenant.viewer, second.get_json()["job_id"])["result"]["imported"] == 2
    items = tenant.viewer.get("/api/v1/tickets?channel=phone").get_json()["items"]
    assert len(items) == 1
    ticket = items[0]
    assert ticket["category"] == "returns, damaged"
    assert ticket["assigned_to"] is None
    assert ticket["sentiment_score"] == 0.25
    # A naive time is wall-clock time in the organization's zone (CET in March).
    assert ticket["created_at"].startswith("2026-03-01T08:30:00")
    assert _tickets(engine, tenant.org_id) == 5


def test_csv_rows_carry_replies_rating_and_history_as_json_cells(
    celery_worker, make_live_tenant, post_import, engine
):
    tenant = make_live_tenant()
    created = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)

    def at(hours: float) -> str:
        return (created + timedelta(hours=hours)).isoformat()

    history = [{"status": "open", "at": at(0)}, {"status": "pending", "at": at(1)}]
    history.append({"status": "resolved", "at": at(5)})
    replies = [{"author": "agent", "at": at(0.5)}, {"author": "customer", "at": at(2), "public": True}]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["subject", "created_at", "replies", "satisfaction", "status_history"])
    writer.writerow(
        ["rich", at(0), json.dumps(replies), json.dumps({"rating": 2, "at": at(6)}), json.dumps(history)]
    )
    writer.writerow(["plain", at(1), "", "", ""])
    done = wait_for_job(
        tenant.viewer, post_import(tenant.agent, out.getvalue(), "text/csv").get_json()["job_id"]
    )
    assert done["state"] == "succeeded", done
    assert done["result"]["imported"] == 2

    def rows(sql: str) -> list[Any]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), {"o": tenant.org_id})]

    rich = "(SELECT id FROM tickets WHERE org_id = :o AND subject = 'rich')"
    assert rows(f"SELECT status FROM tickets WHERE id = {rich}") == [("resolved",)]
    assert rows(f"SELECT author, at FROM ticket_replies WHERE ticket_id = {rich} ORDER BY at") == [
        ("agent", created + timedelta(hours=0.5)),
        ("customer", created + timedelta(hours=2)),
    ]
    assert rows(f"SELECT rating, at FROM ticket_ratings WHERE ticket_id = {rich}") == [
        (2, created + timedelta(hours=6))
    ]
    assert rows(f"SELECT status FROM ticket_status_changes WHERE ticket_id = {rich} ORDER BY at") == [
        ("open",),
        ("pending",),
        ("resolved",),
    ]

    # A JSON cell that does not parse, and a row cut short, are row errors: nothing is imported.
    short = (
        "subject,status,created_at,resolved_at\nSHORT,resolved\n"
        "FULL,resolved,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z\n"
    )
    bad_json = 'subject,replies\nok,\nbad,"[{""author"": ""agent"",]"\n'
    for body, row, field, problem in (
        (short, 1, None, "2 cells but the header 4"),
        (bad_json, 2, "replies", "replies cell is not valid JSON"),
    ):
        refused = post_import(tenant.agent, body, "text/csv")
        assert refused.status_code == 400, refused.get_json()
        errors = refused.get_json()["error"]["details"]["errors"]
        assert [(e["row"], e["field"]) for e in errors] == [(row, field)]
        assert problem in errors[0]["message"]
    assert _tickets(engine, tenant.org_id) == 2


def test_import_is_all_or_nothing_with_a_row_report(celery_worker, make_live_tenant, post_import, engine):
    tenant = make_live_tenant()
    rows = _rows(6)
    rows[1]["priority"] = "whenever"
    rows[4] = ["not", "an", "object"]
    # Rows that are not tickets as the document describes them are refused at submit, every one named.
    refused = post_import(tenant.agent, rows)
    assert refused.status_code == 400
    details = refused.get_json()["error"]["details"]
    assert (details["rows"], details["invalid"]) == (6, 2)
    assert [(e["row"], e["field"]) for e in details["errors"]] == [(2, "priority"), (5, None)]
    assert post_import(tenant.agent, [[None, None]]).status_code == 400

    # The rules between fields (the order of times) are checked at submit too, as POST /tickets
    # checks them: the failing row is named and no job is made.
    rows = _rows(6)
    rows[3]["resolved_at"] = "2001-01-01T00:00:00+00:00"  # before created_at: refused by create_ticket
    refused = post_import(tenant.agent, rows)
    assert refused.status_code == 400, refused.get_json()
    details = refused.get_json()["error"]["details"]
    assert (details["rows"], details["invalid"]) == (6, 1)
    assert [(e["row"], e["field"]) for e in details["errors"]] == [(4, "resolved_at")]
    assert tenant.viewer.get("/api/v1/jobs?kind=import").get_json()["items"] == []

    # A first_response_at after the row's first public agent reply contradicts it (response time and
    # the SLA's first reply would each take another instant); before it or equal to it, it stands.
    created = datetime.now(UTC) - timedelta(days=2)
    rows = [{"subject": f"replied {i}", "created_at": created.isoformat()} for i in range(3)]
    rows[0] |= {
        "first_response_at": created.isoformat(),
        "replies": [{"author": "agent", "at": created.isoformat()}],
    }
    later = (created + timedelta(hours=1)).isoformat()
    rows[1] |= {"first_response_at": later, "replies": [{"author": "customer", "at": created.isoformat()}]}
    rows[2] |= {"first_response_at": later, "replies": [{"author": "agent", "at": created.isoformat()}]}
    refused = post_import(tenant.agent, rows)
    assert refused.status_code == 400, refused.get_json()
    errors = refused.get_json()["error"]["details"]["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(3, "first_response_at")]
    assert "after the first public agent reply" in errors[0]["message"]
    done = wait_for_job(tenant.viewer, post_import(tenant.agent, rows[:2]).get_json()["job_id"])
    assert (done["state"], done["result"]["imported"]) == ("succeeded", 2)
    assert _tickets(engine, tenant.org_id) == 2


def test_import_request_errors(live_app, make_live_tenant, post_import, import_app, monkeypatch):
    tenant = make_live_tenant()
    assert post_import(tenant.viewer, _rows(1)).status_code == 403
    assert post_import(tenant.agent, "a,b", "text/plain").status_code == 415
    bad_json = post_import(tenant.agent, '[{"subject": "x"},', "application/json")
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.get_json()["error"]["message"]
    bad_line = post_import(tenant.agent, '{"subject": "a"}\n{oops}\n', "application/x-ndjson")
    assert bad_line.status_code == 400
    assert bad_line.get_json()["error"]["details"]["line"] == 2
    assert post_import(tenant.agent, {"subject": "x"}).status_code == 400
    assert post_import(tenant.agent, []).status_code == 400
    unknown = post_import(tenant.agent, "subject,colour\nx,red\n", "text/csv")
    assert unknown.status_code == 400
    assert "colour" in unknown.get_json()["error"]["message"]

    monkeypatch.setitem(import_app.config, "IMPORT_MAX_ROWS", 5)
    monkeypatch.setitem(import_app.config, "IMPORT_MAX_BYTES", 2000)
    too_many = post_import(tenant.agent, _rows(6))
    assert too_many.status_code == 413
    assert "at most 5" in too_many.get_json()["error"]["message"]
    too_big = post_import(tenant.agent, [{"subject": "x" * 3000}])
    assert too_big.status_code == 413
    assert too_big.get_json()["error"]["details"]["max_bytes"] == 2000


# --- snapshots, aggregations, dedup -----------------------------------------


def test_snapshot_dedup_and_upsert(celery_worker, make_live_tenant, engine, services):
    tenant = make_live_tenant()
    tenant.agent.post("/api/v1/tickets", json={"subject": "today", "channel": "chat"})
    today = datetime.now(UTC).date().isoformat()
    body = {"type": "daily", "date": today}
    with _share_held(engine, tenant.org_id):
        first = tenant.admin.post("/api/v1/analytics/snapshots", json=body)
        second = tenant.admin.post("/api/v1/analytics/snapshots", json=body)
        assert first.status_code == second.status_code == 202
        assert first.get_json()["job_id"] == second.get_json()["job_id"]
        assert second.get_json()["deduplicated"] is True
    job_id = first.get_json()["job_id"]
    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "succeeded", done
    assert done["result"]["snapshot_date"] == today
    assert done["result"]["ticket_count"] == 1

    rerun = tenant.admin.post("/api/v1/analytics/snapshots", json=body).get_json()
    assert rerun["job_id"] != job_id
    assert wait_for_job(tenant.viewer, rerun["job_id"])["state"] == "succeeded"
    count = "SELECT count(*) FROM analytics_snapshots WHERE org_id = :o"
    assert db_scalar(engine, count, o=tenant.org_id) == 1
    listed = tenant.viewer.get(f"/api/v1/analytics/snapshots?type=daily&start={today}").get_json()
    assert [s["snapshot_date"] for s in listed["items"]] == [today]


def test_a_long_job_yields_the_cpus_and_gets_them_back(
    celery_worker, make_live_tenant, engine, celery, live_app
):
    """A job still running after JOB_DEMOTE_AFTER_SECONDS runs on at JOB_NICENESS, the backend its
    work waits on too; once it ends, its process and that backend are back at their priority."""
    niceness = live_app.config["JOB_NICENESS"]
    tenant = make_live_tenant()
    today = datetime.now(UTC).date().isoformat()
    with _locked(engine, "analytics_snapshots"):
        job_id = tenant.admin.post(
            "/api/v1/analytics/snapshots", json={"type": "daily", "date": today}
        ).get_json()["job_id"]
        child = _pool_child(celery, celery_worker, job_id)
        backend = _until(
            lambda: db_scalar(
                engine,
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query ILIKE '%INSERT INTO analytics_snapshots%'",
            ),
            what="the job's work blocked on the lock",
        )
        _until(lambda: child.nice() == niceness, what="the job's demotion")
        assert os.getpriority(os.PRIO_PROCESS, backend) == niceness
    assert wait_for_job(tenant.viewer, job_id)["state"] == "succeeded"
    _until(lambda: child.nice() == 0, what="the process's priority back")
    # Put back before the pool hands the connection out again (or closed where it cannot be).
    assert not psutil.pid_exists(backend) or os.getpriority(os.PRIO_PROCESS, backend) == 0
    # Its run (blocked past the demotion) counts against its organization's worker-time budget.
    client = redis.Redis.from_url(live_app.config["REDIS_URL"])
    _until(lambda: worker_time.spent(client, tenant.org_id).seconds >= 0.5, what="the run's charge")


def test_concurrent_identical_submissions_share_one_job(celery_worker, make_live_tenant, engine):
    from concurrent.futures import ThreadPoolExecutor

    tenant = make_live_tenant()
    body = {"type": "weekly", "date": "2026-01-07"}
    with _share_held(engine, tenant.org_id):
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda _: tenant.admin.post("/api/v1/analytics/snapshots", json=body), range(4))
            )
        assert {a.status_code for a in answers} == {202}
        assert len({a.get_json()["job_id"] for a in answers}) == 1
    wait_for_job(tenant.viewer, answers[0].get_json()["job_id"])


def test_a_running_job_does_not_answer_an_identical_submission(celery_worker, make_live_tenant, engine):
    """Once a job runs it may have read before a write the client has seen acknowledged since (an
    import that succeeded): an identical submission then gets a job of its own, which reads after it.
    (Here the first job is held at its snapshot's write; a ticket write would wait there too.)"""
    tenant = make_live_tenant()
    body = {"type": "daily", "date": "2026-03-04"}
    with _locked(engine, "analytics_snapshots"):
        first = tenant.admin.post("/api/v1/analytics/snapshots", json=body).get_json()
        _until(lambda: _blocked_writers(engine, "analytics_snapshots"), what="the first job writing")
        second = tenant.admin.post("/api/v1/analytics/snapshots", json=body).get_json()
        assert second["job_id"] != first["job_id"]
        assert not second["deduplicated"]
    for job in (first, second):
        assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"


def test_an_import_is_written_each_time_it_is_sent_and_once_under_one_key(
    celery_worker, make_live_tenant, post_import, engine
):
    """Imports are writes: two sends of one body import it twice, as two POSTs of a ticket would;
    the contract's Idempotency-Key is what makes a retry safe, even one sent while the first runs."""
    from concurrent.futures import ThreadPoolExecutor

    tenant = make_live_tenant()
    rows = _rows(50)
    twice = [post_import(tenant.agent, rows) for _ in range(2)]
    assert [a.status_code for a in twice] == [202, 202]
    assert len({a.get_json()["job_id"] for a in twice}) == 2
    assert not any(a.get_json()["deduplicated"] for a in twice)
    for answer in twice:
        assert wait_for_job(tenant.viewer, answer.get_json()["job_id"])["state"] == "succeeded"
    assert _tickets(engine, tenant.org_id) == 100

    key = str(uuid.uuid4())
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_import(tenant.agent, rows, key=key), range(6)))
    assert {a.status_code for a in answers} == {202}
    job_ids = {a.get_json()["job_id"] for a in answers}
    assert len(job_ids) == 1
    done = wait_for_job(tenant.viewer, job_ids.pop())
    assert done["state"] == "succeeded"
    again = post_import(tenant.agent, rows, key=key)  # a retry after the first succeeded
    assert again.get_json()["job_id"] == done["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _tickets(engine, tenant.org_id) == 150


def test_aggregation_job(celery_worker, make_live_tenant, post_import):
    tenant = make_live_tenant()
    wait_for_job(tenant.viewer, post_import(tenant.agent, _rows(12)).get_json()["job_id"])
    request = {
        "metrics": ["ticket_count", "response_time"],
        "group_by": ["priority"],
        "start": (datetime.now(UTC) - timedelta(days=10)).date().isoformat(),
        "async": True,
    }
    response = tenant.viewer.post("/api/v1/analytics/aggregations", json=request)
    assert response.status_code == 202, response.get_json()
    done = wait_for_job(tenant.viewer, response.get_json()["job_id"])
    assert done["state"] == "succeeded", done
    assert done["kind"] == "aggregation"
    counts = {row["group"]["priority"]: row["ticket_count"]["count"] for row in done["result"]["rows"]}
    assert counts == {"low": 3, "normal": 3, "high": 3, "urgent": 3}


# --- cancel -----------------------------------------------------------------


def test_cancel_a_queued_job(celery_worker, make_live_tenant, post_import, engine):
    tenant = make_live_tenant()
    processes = len(psutil.Process(celery_worker.pid).children())
    with _locked(engine, "analytics_snapshots"):
        # One stuck snapshot job per pool process, so the import has to stay in the queue (each of
        # another organization: one organization runs at most half of the pool's slots at once).
        owners = [tenant] + [make_live_tenant(f"Busy {n}") for n in range(1, processes)]
        busy = [
            owner.admin.post(
                "/api/v1/analytics/snapshots", json={"type": "daily", "date": f"2026-01-{day:02d}"}
            ).get_json()
            for day, owner in enumerate(owners, start=1)
        ]
        for job in busy:
            # (A loaded machine's pool may still be finishing an earlier test's work.)
            _until(_running(engine, job["job_id"], 1), timeout=60, what="busy job running")
        queued = post_import(tenant.agent, _rows(5)).get_json()["job_id"]
        time.sleep(0.3)
        assert _row(engine, queued)["state"] == "queued"
        cancelled = tenant.agent.delete(f"/api/v1/jobs/{queued}")
        assert cancelled.status_code == 200
        assert (cancelled.get_json()["state"], cancelled.get_json()["cancel_requested"]) == (
            "cancelled",
            True,
        )
    for owner, job in zip(owners, busy, strict=True):
        assert wait_for_job(owner.viewer, job["job_id"])["state"] == "succeeded"
    time.sleep(0.5)
    row = _row(engine, queued)
    assert (row["state"], row["attempts"], row["result"]) == ("cancelled", 0, None)
    assert _tickets(engine, tenant.org_id) == 0


def test_cancel_a_running_job_leaves_nothing(celery_worker, make_live_tenant, post_import, engine, services):
    tenant = make_live_tenant()
    with _locked(engine, "tickets"):
        job_id = post_import(tenant.agent, _rows(200)).get_json()["job_id"]
        _until(_running(engine, job_id, 1), what="import running")
        _until(lambda: _blocked_writers(engine, "tickets"), what="import waiting on the lock")
        response = tenant.agent.delete(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200
        assert (response.get_json()["state"], response.get_json()["cancel_requested"]) == ("running", True)
    done = wait_for_job(tenant.viewer, job_id)
    assert done["state"] == "cancelled"
    assert done["result"] is None
    assert _tickets(engine, tenant.org_id) == 0
    assert _job_events(services, tenant.org_id, job_id)[-1]["state"] == "cancelled"
    assert tenant.agent.delete(f"/api/v1/jobs/{job_id}").status_code == 409


# --- crash safety -----------------------------------------------------------


def test_killed_pool_process_mid_import_is_redelivered_and_imports_once(
    celery_worker, make_live_tenant, post_import, engine, celery, services
):
    tenant = make_live_tenant()
    job_id = post_import(tenant.agent, _rows(1500)).get_json()["job_id"]
    # Part of the batch is written (uncommitted) by the time progress passes 20 %.
    _until(lambda: _row(engine, job_id)["progress"] >= 0.2, what="import under way")
    child = _pool_child(celery, celery_worker, job_id)
    assert _row(engine, job_id)["state"] == "running"
    os.kill(child.pid, signal.SIGKILL)

    done = wait_for_job(tenant.viewer, job_id, timeout=60)
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["result"]["imported"] == 1500
    assert _tickets(engine, tenant.org_id) == 1500
    states = [e["state"] for e in _job_events(services, tenant.org_id, job_id)]
    assert states.count("succeeded") == 1
    assert celery_worker.poll() is None


def test_a_second_delivery_of_a_running_import_is_dropped(
    celery_worker, make_live_tenant, post_import, engine, celery, services
):
    """The broker may deliver a task again while it runs (visibility timeout, a requeue racing the
    original): the second delivery must not import the batch a second time."""
    tenant = make_live_tenant()
    with _locked(engine, "tickets"):  # the import starts, then waits to write
        job_id = post_import(tenant.agent, _rows(300)).get_json()["job_id"]
        _until(_running(engine, job_id, 1), what="import running")
        celery.send_task("tickets.import", args=[job_id], queue="default")
        log_path = TEST_INSTANCE / "worker.log"
        _until(
            lambda: f"job={job_id} is being run by another delivery" in log_path.read_text(errors="replace"),
            what="the second delivery dropped",
        )
    done = wait_for_job(tenant.viewer, job_id, timeout=60)
    assert (done["state"], done["attempts"], done["result"]["imported"]) == ("succeeded", 1, 300)
    assert _tickets(engine, tenant.org_id) == 300
    states = [e["state"] for e in _job_events(services, tenant.org_id, job_id)]
    assert states.count("succeeded") == 1


def test_an_import_committed_before_its_worker_died_is_not_written_again(
    celery_worker, make_live_tenant, live_app, engine
):
    # The state a worker leaves when it dies between committing the batch and finishing the job:
    # the result is committed with the tickets, the job still says running.
    tenant = make_live_tenant()
    committed = {"rows": 2, "imported": 2, "events": 2, "invalid": 0, "errors": [], "errors_omitted": 0}
    committed |= {"event_types": ["created"], "fields": ["subject"]}
    session = live_app.extensions["db_sessionmaker"]()
    params = {"format": "json", "row_count": 2, "rows": _rows(2)}
    job = Job(
        org_id=tenant.org_id,
        kind="import",
        params=params,
        params_hash="redelivered",
        state="running",
        attempts=1,
        result=committed,
    )
    session.add(job)
    session.commit()
    jobs.enqueue(
        session, redis.Redis.from_url(live_app.config["REDIS_URL"]), live_app.extensions["celery"], job
    )
    session.close()
    done = wait_for_job(tenant.viewer, str(job.id))
    assert (done["state"], done["attempts"], done["result"]) == ("succeeded", 2, committed)
    assert _tickets(engine, tenant.org_id) == 0


def test_killed_pool_process_mid_snapshot_leaves_one_row(celery_worker, make_live_tenant, engine, celery):
    tenant = make_live_tenant()
    body = {"type": "monthly", "date": "2026-02-10"}
    with _locked(engine, "analytics_snapshots"):
        job_id = tenant.admin.post("/api/v1/analytics/snapshots", json=body).get_json()["job_id"]
        _until(_running(engine, job_id, 1), what="snapshot running")
        os.kill(_pool_child(celery, celery_worker, job_id).pid, signal.SIGKILL)
        # Redelivered as soon as the surviving parent notices (not after the visibility timeout):
        # task_reject_on_worker_lost puts the message back in the queue.
        _until(_running(engine, job_id, 2), timeout=15, what="second attempt")
    done = wait_for_job(tenant.viewer, job_id)
    assert (done["state"], done["attempts"]) == ("succeeded", 2)
    rows = "SELECT count(*) FROM analytics_snapshots WHERE org_id = :o AND snapshot_date = '2026-02-01'"
    assert db_scalar(engine, rows, o=tenant.org_id) == 1


def test_a_cancelled_job_whose_worker_dies_ends_cancelled(celery_worker, make_live_tenant, engine, celery):
    tenant = make_live_tenant()
    before = _blocked_writers(engine, "analytics_snapshots")
    with _locked(engine, "analytics_snapshots"):
        body = {"type": "daily", "date": "2026-01-20"}
        job_id = tenant.admin.post("/api/v1/analytics/snapshots", json=body).get_json()["job_id"]
        _until(_running(engine, job_id, 1), what="snapshot running")
        # Past its last checkpoint, so only the redelivery can notice the cancel.
        _until(lambda: _blocked_writers(engine, "analytics_snapshots") > before, what="snapshot writing")
        assert tenant.admin.delete(f"/api/v1/jobs/{job_id}").get_json()["state"] == "running"
        os.kill(_pool_child(celery, celery_worker, job_id).pid, signal.SIGKILL)
        # The redelivered task sees the cancel before doing any work.
        done = wait_for_job(tenant.viewer, job_id)
    assert (done["state"], done["attempts"], done["result"]) == ("cancelled", 1, None)


def test_a_job_that_kills_its_worker_every_time_fails_and_the_queue_drains(
    celery_worker, make_live_tenant, engine, celery, live_app, services
):
    tenant = make_live_tenant()
    max_attempts = live_app.config["JOB_MAX_ATTEMPTS"]
    broker = redis.Redis.from_url(services.redis_url)
    with _locked(engine, "analytics_snapshots"):
        job_id = tenant.admin.post(
            "/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-01-15"}
        ).get_json()["job_id"]
        for attempt in range(1, max_attempts + 1):
            _until(_running(engine, job_id, attempt), timeout=15, what=f"attempt {attempt}")
            os.kill(_pool_child(celery, celery_worker, job_id).pid, signal.SIGKILL)
        done = wait_for_job(tenant.viewer, job_id, timeout=30)
    assert done["state"] == "failed"
    assert done["attempts"] == max_attempts
    assert f"gave up after {max_attempts} attempts" in done["error"]["message"]
    assert done["error"]["code"] == "worker_lost"  # every error has its code, as the contract's do

    def drained() -> bool:
        unacked = [v for v in broker.hvals("unacked") if job_id.encode() in v]
        return broker.llen("default") == 0 and not unacked

    _until(drained, timeout=10, what="the queue to drain")
    assert celery_worker.poll() is None
    assert (
        db_scalar(engine, "SELECT count(*) FROM analytics_snapshots WHERE org_id = :o", o=tenant.org_id) == 0
    )


# --- beat ---------------------------------------------------------------------


def test_schedule_due_for_a_fixed_clock_in_two_zones_fires_twice_one_snapshot(
    celery_worker, make_live_tenant, celery, engine
):
    auckland = make_live_tenant("Kiwi", timezone="Pacific/Auckland")
    los_angeles = make_live_tenant("Cali", timezone="America/Los_Angeles")
    orgs = [auckland.org_id, los_angeles.org_id]
    # Saturday 28 Feb 2026 12:30 UTC: already Sunday 1 March in Auckland, Saturday morning in LA.
    now = "2026-02-28T12:30:00+00:00"
    runs = [
        celery.send_task("snapshots.schedule_due", kwargs={"now": now, "org_ids": orgs}) for _ in range(2)
    ]
    submitted = [job for run in runs for job in run.get(timeout=30)["submitted"]]
    assert len(submitted) == len(set(submitted)) == 6

    expected = {
        auckland.org_id: {("daily", "2026-02-28"), ("weekly", "2026-02-16"), ("monthly", "2026-02-01")},
        los_angeles.org_id: {("daily", "2026-02-27"), ("weekly", "2026-02-16"), ("monthly", "2026-01-01")},
    }
    for tenant in (auckland, los_angeles):
        jobs = tenant.viewer.get("/api/v1/jobs?kind=snapshot").get_json()["items"]
        assert {(j["params"]["snapshot_type"], j["params"]["snapshot_date"]) for j in jobs} == expected[
            tenant.org_id
        ]
        assert len(jobs) == 3
        for job in jobs:
            assert wait_for_job(tenant.viewer, job["id"])["state"] == "succeeded"
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT snapshot_type, snapshot_date FROM analytics_snapshots WHERE org_id = :o"),
                {"o": tenant.org_id},
            ).all()
        assert {(t, d.isoformat()) for t, d in stored} == expected[tenant.org_id]

    again = run_task(celery, "snapshots.schedule_due", now=now, org_ids=orgs)
    assert again["submitted"] == []
    assert again["already_stored"] == 6


def test_cleanup_exports_past_retention(celery_worker, make_live_tenant, live_app, celery):
    tenant = make_live_tenant()
    root = Path(live_app.config["EXPORT_DIR"]) / f"cleanup-{tenant.org_id}"
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=live_app.config["EXPORT_RETENTION_DAYS"] + 3)).timestamp()
    old_file, new_file = root / "old.csv", root / "new.csv"
    stray_old, stray_new = root / "killed.csv.tmp", root / "writing.csv.tmp"
    for path in (old_file, new_file, stray_old, stray_new):
        path.write_text("id\n1\n")
    os.utime(stray_old, (long_ago, long_ago))
    # What a killed writer leaves: a temporary file and an XLSX scratch folder, from hours ago or now.
    from webapp.exports.files import SCRATCH_MIN_AGE

    scratch_age = max(timedelta(seconds=2 * live_app.config["TASK_TIME_LIMIT"]), SCRATCH_MIN_AGE)
    hours_ago = (now - scratch_age - timedelta(minutes=1)).timestamp()
    part_old, part_new = root / ".killed.csv.part", root / ".writing.csv.part"
    scratch_old, scratch_new = root / ".xlsx-killed", root / ".xlsx-writing"
    for folder in (scratch_old, scratch_new):
        folder.mkdir(exist_ok=True)
        (folder / "sheet1.xml").write_text("<rows/>")
    for path in (part_old, part_new):
        path.write_text("id\n")
    for path in (part_old, scratch_old):
        os.utime(path, (hours_ago, hours_ago))
    session = live_app.extensions["db_sessionmaker"]()
    ids = {}
    for name, path, created in (("old", old_file, now - timedelta(days=30)), ("new", new_file, now)):
        job = Job(
            org_id=tenant.org_id, kind="export", params={"n": name}, params_hash=name, state="succeeded"
        )
        session.add(job)
        session.flush()
        export = Export(
            job_id=job.id,
            org_id=tenant.org_id,
            format="csv",
            path=str(path),
            filename=path.name,
            rows=1,
            bytes=5,
            sha256="0" * 64,
            expires_at=created + timedelta(days=1),
            created_at=created,
        )
        session.add(export)
        session.flush()
        ids[name] = export.id
    session.commit()

    outcome = run_task(celery, "maintenance.cleanup_exports")
    assert outcome["expired"] >= 1
    assert not old_file.exists()
    assert not stray_old.exists()
    assert new_file.exists()
    assert stray_new.exists()
    assert outcome["scratch_deleted"] >= 2
    assert (part_old.exists(), scratch_old.exists()) == (False, False)
    assert (part_new.exists(), scratch_new.exists()) == (True, True)
    session.expire_all()
    assert session.get(Export, ids["old"]).deleted_at is not None
    assert session.get(Export, ids["new"]).deleted_at is None
    session.close()


def test_cache_warm_submits_refresh_jobs_for_orgs_with_popular_queries(
    celery_worker, make_live_tenant, celery, services
):
    busy = make_live_tenant("Busy")
    quiet = make_live_tenant("Quiet")
    client = redis.Redis.from_url(services.redis_url)
    client.zincrby(
        popular.popular_key(busy.org_id), 1, popular.member("time_series", {"metric": "ticket_count"})
    )
    outcome = run_task(celery, "cache.warm", org_ids=[busy.org_id, quiet.org_id])
    assert len(outcome["submitted"]) == 1
    job_id = outcome["submitted"][0]
    assert wait_for_job(busy.viewer, job_id)["kind"] == "cache_refresh"
    assert quiet.viewer.get("/api/v1/jobs").get_json()["items"] == []


# --- isolation, logs, configuration -----------------------------------------


def test_another_organizations_import_is_invisible(celery_worker, make_live_tenant, post_import, engine):
    alpha = make_live_tenant("Alpha")
    beta = make_live_tenant("Beta")
    job_id = post_import(alpha.agent, _rows(3)).get_json()["job_id"]
    assert beta.admin.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert beta.admin.delete(f"/api/v1/jobs/{job_id}").status_code == 404
    assert beta.admin.get("/api/v1/jobs?kind=import").get_json()["items"] == []
    assert wait_for_job(alpha.viewer, job_id)["state"] == "succeeded"
    assert beta.viewer.get("/api/v1/tickets").get_json()["items"] == []
    assert _tickets(engine, beta.org_id) == 0


def test_worker_log_lines_carry_job_and_organization(celery_worker, make_live_tenant, post_import):
    tenant = make_live_tenant()
    job_id = post_import(tenant.agent, _rows(2)).get_json()["job_id"]
    wait_for_job(tenant.viewer, job_id)
    log_path = TEST_INSTANCE / "worker.log"

    def ours() -> list[str]:
        lines = log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if f"job={job_id}" in line]

    lines = _until(lambda: (lambda found: len(found) >= 2 and found)(ours()), what="job log lines")
    assert all(f"org={tenant.org_id}" in line for line in lines)
    assert any("started attempt 1" in line for line in lines)
    assert any("succeeded" in line for line in lines)


def test_worker_refuses_to_start_with_wrong_time_limits(services):
    env = dict(
        os.environ,
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        BROKER_URL=services.redis_url,
        JWT_SECRET_KEY=JWT_SECRET,
        TASK_SOFT_TIME_LIMIT="600",
        TASK_TIME_LIMIT="900",
        BROKER_VISIBILITY_TIMEOUT="300",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "--queues",
            "nowhere",
            "--concurrency",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "refuses to start" in proc.stderr
    assert "soft < hard < broker visibility timeout" in proc.stderr
    assert "visibility_timeout=300" in proc.stderr


def test_snapshot_dates_round_to_their_period(celery_worker, make_live_tenant):
    tenant = make_live_tenant()
    answer = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "weekly", "date": "2026-03-05"})
    done = wait_for_job(tenant.viewer, answer.get_json()["job_id"])
    assert done["result"]["snapshot_date"] == date(2026, 3, 2).isoformat()


def test_the_worker_takes_jobs_again_after_redis_restarts_under_a_running_one(
    celery_worker, make_live_tenant, post_import, engine, stoppable_redis, services, live_app
):
    """Redis restarts while a job runs (an import waiting on a lock), twice: each time the worker
    keeps taking new jobs, and the import is run to its end once."""
    tenant = make_live_tenant()
    for restart in (1, 2):
        with _locked(engine, "tickets"):
            job_id = post_import(tenant.agent, _rows(5)).get_json()["job_id"]
            _until(_running(engine, job_id, 1), what="import running")
            stoppable_redis.stop()
            time.sleep(1)
            stoppable_redis.start()
            wait_redis(services.redis_url)
        fresh = tenant.admin.post("/api/v1/analytics/refresh-cache")
        assert fresh.status_code == 202, fresh.get_json()
        assert wait_for_job(tenant.viewer, fresh.get_json()["job_id"], timeout=30)["state"] == "succeeded"
        assert wait_for_job(tenant.viewer, job_id, timeout=30)["state"] == "succeeded"
        assert _tickets(engine, tenant.org_id) == 5 * restart


def test_a_channel_or_category_change_regroups_a_tickets_metrics_from_its_instant_only(
    celery_worker, make_live_tenant, post_import
):
    """Before the change every metric of the ticket is the old value's, after it the new one's, as for
    a priority change: expected values written out from the contract's definitions."""
    tenant = make_live_tenant(timezone="UTC")
    row = {
        "subject": "moved",
        "channel": "email",
        "category": "catA",
        "created_at": "2026-11-29T12:00:00Z",
        "status": "resolved",
        "resolved_at": "2026-11-30T15:00:00Z",
        "status_history": [
            {"status": "open", "at": "2026-11-29T12:00:00Z"},
            {"status": "resolved", "at": "2026-11-30T10:00:00Z"},
            {"status": "open", "at": "2026-11-30T11:00:00Z"},
            {"status": "resolved", "at": "2026-11-30T15:00:00Z"},
        ],
        "satisfaction": {"rating": 5, "at": "2026-11-30T16:00:00Z"},
    }
    open_row = {
        "subject": "open",
        "channel": "email",
        "category": "catA",
        "created_at": "2026-11-29T13:00:00Z",
    }
    done = wait_for_job(tenant.viewer, post_import(tenant.agent, [row, open_row]).get_json()["job_id"])
    assert done["state"] == "succeeded", done
    ids = {t["subject"]: t["id"] for t in tenant.viewer.get("/api/v1/tickets").get_json()["items"]}
    assert tenant.agent.patch(f"/api/v1/tickets/{ids['moved']}", json={"channel": "chat"}).status_code == 200
    assert tenant.agent.patch(f"/api/v1/tickets/{ids['open']}", json={"category": "catB"}).status_code == 200

    def series(metric: str, **filters: str) -> list[Any]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        window = "start=2026-11-29&end=2026-12-02&granularity=daily"
        path = f"/api/v1/analytics/time-series/{metric}?{window}&{query}"
        answer = tenant.viewer.get(path).get_json()
        return [p["value"] for p in answer["points"]]

    # Everything of the moved ticket happened while it was an email ticket.
    assert series("ticket_count", channel="email") == [2, 0, 0]
    assert series("solved", channel="email") == [0, 2, 0]
    assert series("reopens", channel="email") == [0, 1, 0]
    assert series("csat", channel="email") == [None, 100.0, None]
    assert series("solved", channel="chat") == [0, 0, 0]
    assert series("csat", channel="chat") == [None, None, None]
    # The open ticket was in catA at the end of each of these days (its change came later).
    assert series("backlog", category="catA") == [2, 1, 1]
    assert series("backlog", category="catB") == [0, 0, 0]
    assert series("ticket_count", category="catB") == [0, 0, 0]


def test_a_job_whose_run_lock_connection_is_cut_is_sent_again_at_once(
    celery_worker, make_live_tenant, post_import, engine
):
    """The server ends the worker's connection that holds the job's run lock mid-import (a failover, an
    operator's pg_terminate_backend): the delivery cannot record anything more, and the job is sent
    again within seconds (not at beat's lost-job sweep, a minute on), its rows written once."""
    from webapp.jobs.recovery import run_lock_key

    tenant = make_live_tenant()
    response = post_import(tenant.agent, _rows(10_000, start=datetime.now(UTC) - timedelta(days=10)))
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    key = run_lock_key(job_id)
    holder = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND classid = :classid AND objid = :objid"
    )
    params = {"classid": (key >> 32) & 0xFFFFFFFF, "objid": key & 0xFFFFFFFF}
    running = text("SELECT state = 'running' FROM jobs WHERE id = :id")
    deadline = time.monotonic() + 30
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while not conn.execute(running, {"id": job_id}).scalar():
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.01)
        pid = conn.execute(holder, params).scalar()
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    cut = time.monotonic()
    done = wait_for_job(tenant.viewer, job_id, timeout=60)
    assert done["state"] == "succeeded", done
    assert time.monotonic() - cut < 25  # beat's sweep finds a lost job only after a minute
    with engine.connect() as conn:
        attempts = conn.execute(text("SELECT attempts FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
        tickets = conn.execute(text("SELECT count(*) FROM tickets WHERE org_id = :o"), {"o": tenant.org_id})
        assert tickets.scalar() == 10_000
    assert attempts == 2
