"""A report's runs make export files like any export request, so they meet the same limits: the
organization's export quota and its cap on active exports refuse a manual run (429, nothing created)
and hold back a scheduled one (no job, the schedule moves on to its next time)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from webapp.core.timeutil import utcnow
from webapp.exports.room import ExportLimits
from webapp.infra.redis_client import get_redis
from webapp.models import Export, Job, ReportRun, ReportSchedule
from webapp.reports import runs

EXPORT = {"format": "csv", "dataset": "tickets", "query": {"range": "month_to_date"}}


@pytest.fixture
def schedule(make_tenant: Any, app: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int]:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    tenant = make_tenant("Reports")
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    body = {"name": "daily", "cron": "0 7 * * *", "timezone": "UTC", "export": EXPORT, "webhook_id": hook}
    created = tenant.admin.post("/api/v1/report-schedules", json=body)
    assert created.status_code == 201, created.get_json()
    return tenant, created.get_json()["id"]


def _busy_exports(db_session: Any, org_id: int, n: int) -> None:
    db_session.add_all(
        Job(
            id=uuid.uuid4(),
            org_id=org_id,
            kind="export",
            params={"n": i},
            params_hash=f"b{i}",
            state="running",
        )
        for i in range(n)
    )
    db_session.commit()


def _counts(db_session: Any, org_id: int) -> tuple[int, int]:
    jobs = db_session.scalar(select(func.count()).select_from(Job).where(Job.org_id == org_id))
    made = db_session.scalar(select(func.count()).select_from(ReportRun).where(ReportRun.org_id == org_id))
    return jobs, made


def test_a_manual_run_at_the_export_cap_is_429_and_creates_nothing(schedule, db_session, app, monkeypatch):
    tenant, schedule_id = schedule
    monkeypatch.setitem(app.config, "EXPORT_MAX_ACTIVE_PER_ORG", 2)
    _busy_exports(db_session, tenant.org_id, 2)
    before = _counts(db_session, tenant.org_id)
    refused = tenant.admin.post(f"/api/v1/report-schedules/{schedule_id}/run")
    assert refused.status_code == 429, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_active_exports"
    assert "EXPORT_MAX_ACTIVE_PER_ORG" in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert _counts(db_session, tenant.org_id) == before


def test_a_manual_run_at_the_quota_is_429_and_creates_nothing(schedule, db_session, app, monkeypatch):
    tenant, schedule_id = schedule
    monkeypatch.setitem(app.config, "EXPORT_QUOTA_BYTES", 500)
    job = Job(
        id=uuid.uuid4(), org_id=tenant.org_id, kind="export", params={}, params_hash="q", state="succeeded"
    )
    db_session.add(job)
    db_session.flush()
    db_session.add(
        Export(
            job_id=job.id,
            org_id=tenant.org_id,
            format="csv",
            path="/kept.csv",
            filename="kept.csv",
            rows=1,
            bytes=500,
            sha256="0" * 64,
            expires_at=utcnow() + timedelta(days=1),
        )
    )
    db_session.commit()
    before = _counts(db_session, tenant.org_id)
    refused = tenant.admin.post(f"/api/v1/report-schedules/{schedule_id}/run")
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["code"] == "export_quota_exceeded"
    assert _counts(db_session, tenant.org_id) == before


def test_a_scheduled_run_at_the_cap_makes_no_job_and_stays_due_until_there_is_room(schedule, db_session, app):
    tenant, schedule_id = schedule
    with app.app_context():
        _scheduled_runs_meet_the_cap(tenant, schedule_id, db_session, app)


def _scheduled_runs_meet_the_cap(tenant: Any, schedule_id: int, db_session: Any, app: Any) -> None:
    _busy_exports(db_session, tenant.org_id, 1)
    row = db_session.get(ReportSchedule, schedule_id)
    now = row.next_run_at + timedelta(minutes=1)
    before = _counts(db_session, tenant.org_id)
    limits = ExportLimits(quota_bytes=10**9, max_active=1, max_cells=200_000)
    job = runs.run_due(db_session, get_redis(), app.extensions["celery"], schedule_id, now=now, limits=limits)
    assert job is None
    assert _counts(db_session, tenant.org_id) == before
    db_session.expire_all()
    row = db_session.get(ReportSchedule, schedule_id)
    # Still due (a cap is full only for a while): tried again at the next pass, not dropped until the
    # cron's next time; and no run is said to have happened.
    assert row.next_run_at <= now
    assert row.last_run_at is None
    # With room, the next pass makes its export job and run row.
    later = now + timedelta(seconds=15)
    roomy = ExportLimits(quota_bytes=10**9, max_active=5, max_cells=200_000)
    job = runs.run_due(
        db_session, get_redis(), app.extensions["celery"], schedule_id, now=later, limits=roomy
    )
    assert job is not None
    assert job.kind == "export"
    assert _counts(db_session, tenant.org_id) == (before[0] + 1, before[1] + 1)


def test_a_report_whose_groups_outgrow_the_cells_limit_is_refused_when_saved_and_when_run(
    make_tenant, app, monkeypatch, db_session
):
    """A schedule is checked as an export request is, its free-text groups counted over its range,
    when it is saved and again at each run: a report saved under ANALYTICS_MAX_CELLS whose data grew
    past it is refused (a manual run 400 too_costly, a scheduled one not made), nothing created."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    monkeypatch.setitem(app.config, "ANALYTICS_MAX_CELLS", 500)
    tenant = make_tenant("Growing report")
    for category in ("a", "b"):
        assert (
            tenant.agent.post("/api/v1/tickets", json={"subject": "x", "category": category}).status_code
            == 201
        )
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    # The default range, 30 local days: 30 daily buckets x (1 + 4 + 3) statistics = 240 cells a group.
    query = {"metrics": ["ticket_count", "response_time"], "group_by": ["category"], "granularity": "daily"}
    export = {"format": "csv", "dataset": "aggregations", "query": query}
    body = {
        "name": "by category",
        "cron": "0 7 * * *",
        "timezone": "UTC",
        "export": export,
        "webhook_id": hook,
    }
    created = tenant.admin.post("/api/v1/report-schedules", json=body)
    assert created.status_code == 201, created.get_json()  # 2 groups: 480 cells
    schedule_id = created.get_json()["id"]
    for category in ("c", "d"):
        assert (
            tenant.agent.post("/api/v1/tickets", json={"subject": "x", "category": category}).status_code
            == 201
        )
    before = _counts(db_session, tenant.org_id)

    refused = tenant.admin.post(f"/api/v1/report-schedules/{schedule_id}/run")
    error = refused.get_json()["error"]
    assert (refused.status_code, error["code"]) == (400, "too_costly"), error
    assert (error["details"]["groups"], error["details"]["estimate"], error["details"]["limit"]) == (
        4,
        960,
        500,
    )
    assert _counts(db_session, tenant.org_id) == before

    with app.app_context():
        row = db_session.get(ReportSchedule, schedule_id)
        now = row.next_run_at + timedelta(minutes=1)
        limits = ExportLimits(quota_bytes=10**9, max_active=5, max_cells=500)
        job = runs.run_due(
            db_session, get_redis(), app.extensions["celery"], schedule_id, now=now, limits=limits
        )
    assert job is None
    assert _counts(db_session, tenant.org_id) == before

    for response in (
        tenant.admin.patch(f"/api/v1/report-schedules/{schedule_id}", json={"export": export}),
        tenant.admin.post("/api/v1/report-schedules", json={**body, "name": "again"}),
    ):
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["error"]["details"]["estimate"] == 960


def test_a_scheduled_run_whose_job_the_broker_refused_still_says_it_ran(schedule, db_session, app):
    """The job and its run row are committed before the broker is asked: a refused send fails them,
    and the schedule's last_run_at keeps the run (a review found it put back, leaving last_run
    naming a run last_run_at did not). A real Celery app whose broker nobody listens on."""
    from celery import Celery

    _, schedule_id = schedule
    row = db_session.get(ReportSchedule, schedule_id)
    now = row.next_run_at + timedelta(minutes=1)
    nowhere = Celery(broker="redis://127.0.0.1:1/0", set_as_current=False)
    limits = ExportLimits(quota_bytes=10**9, max_active=5, max_cells=200_000)
    with app.app_context():
        assert runs.run_due(db_session, get_redis(), nowhere, schedule_id, now=now, limits=limits) is None
    db_session.expire_all()
    row = db_session.get(ReportSchedule, schedule_id)
    assert row.last_run_at == now
    assert row.next_run_at > now
    run = db_session.scalar(select(ReportRun).where(ReportRun.schedule_id == schedule_id))
    assert run is not None
    assert db_session.get(Job, run.job_id).state == "failed"
