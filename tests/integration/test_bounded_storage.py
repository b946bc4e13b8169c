"""What an organization leaves behind is bounded: its popularity set is trimmed and expires, finished
jobs and import payloads are purged after their retention, and export files have a quota."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.conftest import run_task
from webapp.analytics import popular
from webapp.models import Job
from webapp.models.jobs import Export


@pytest.fixture
def redis_client(services):
    return redis.Redis.from_url(services.redis_url)


def _series(api, day: int):
    start = (datetime(2020, 1, 1) + timedelta(days=day)).date().isoformat()
    return api.get(
        f"/api/v1/analytics/time-series/ticket_count?start={start}&end=2026-01-01&granularity=yearly"
    )


def test_the_popularity_set_keeps_its_most_requested_members_and_expires(tenant, redis_client):
    key = popular.popular_key(tenant.org_id)
    for _ in range(3):
        assert _series(tenant.viewer, 0).status_code == 200
    for day in range(1, popular.KEEP + 60):
        assert _series(tenant.viewer, day).status_code == 200
    assert redis_client.zcard(key) == popular.KEEP
    assert 0 < redis_client.ttl(key) <= popular.TTL_SECONDS
    top = popular.top(redis_client, tenant.org_id, 1)[0]
    assert top["params"]["start"].startswith("2020-01-01")


def _job(session, org_id: int, *, kind="snapshot", state="succeeded", finished=None, params=None) -> Job:
    job = Job(
        id=uuid.uuid4(),
        org_id=org_id,
        kind=kind,
        params=params or {"n": str(uuid.uuid4())},
        params_hash=uuid.uuid4().hex,
        state=state,
        finished_at=finished,
    )
    session.add(job)
    session.flush()
    return job


def test_finished_jobs_and_import_payloads_are_purged_after_their_retention(
    celery_worker, make_live_tenant, live_app
):
    tenant = make_live_tenant()
    now = datetime.now(UTC)
    retention = live_app.config["JOB_RETENTION_DAYS"]
    old = now - timedelta(days=retention + 1)
    session = live_app.extensions["db_sessionmaker"]()
    rows = [{"subject": "a"}, {"subject": "b"}]
    jobs = {
        "old": _job(session, tenant.org_id, finished=old),
        "old_failed": _job(session, tenant.org_id, state="failed", finished=old),
        "recent": _job(session, tenant.org_id, finished=now - timedelta(days=retention - 1)),
        "running": _job(session, tenant.org_id, state="running"),
        "import_done": _job(
            session,
            tenant.org_id,
            kind="import",
            finished=now - timedelta(hours=2),
            params={"format": "json", "row_count": 2, "rows": rows},
        ),
        "import_just_done": _job(
            session,
            tenant.org_id,
            kind="import",
            finished=now - timedelta(minutes=5),
            params={"format": "json", "row_count": 2, "rows": rows},
        ),
        "old_export_served": _job(session, tenant.org_id, kind="export", finished=old),
    }
    session.add(
        Export(
            job_id=jobs["old_export_served"].id,
            org_id=tenant.org_id,
            format="csv",
            path="/nowhere.csv",
            filename="x.csv",
            rows=1,
            bytes=5,
            sha256="0" * 64,
            expires_at=now + timedelta(days=1),
        )
    )
    session.commit()
    ids = {name: job.id for name, job in jobs.items()}

    outcome = run_task(live_app.extensions["celery"], "maintenance.purge_jobs")
    assert outcome["jobs_deleted"] >= 2
    assert outcome["payloads_stripped"] >= 1
    session.expire_all()
    left = {name for name, job_id in ids.items() if session.get(Job, job_id) is not None}
    assert left == {"recent", "running", "import_done", "import_just_done", "old_export_served"}
    assert "rows" not in session.get(Job, ids["import_done"]).params
    assert session.get(Job, ids["import_done"]).params["row_count"] == 2
    assert session.get(Job, ids["import_just_done"]).params["rows"] == rows
    session.close()


def test_an_export_past_the_quota_is_429_and_queues_nothing(tenant, app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_QUOTA_BYTES", 1000)
    now = datetime.now(UTC)
    for size, expires in ((600, now + timedelta(days=1)), (500, now - timedelta(hours=1))):
        job = _job(db_session, tenant.org_id, kind="export", finished=now)
        db_session.add(
            Export(
                job_id=job.id,
                org_id=tenant.org_id,
                format="csv",
                path="/x.csv",
                filename="x.csv",
                rows=1,
                bytes=size,
                sha256="0" * 64,
                expires_at=expires,
            )
        )
    db_session.commit()
    body = {"format": "csv", "dataset": "tickets"}
    assert tenant.viewer.post("/api/v1/analytics/export", json=body).status_code == 202  # 600 live bytes

    job = _job(db_session, tenant.org_id, kind="export", finished=now)
    db_session.add(
        Export(
            job_id=job.id,
            org_id=tenant.org_id,
            format="csv",
            path="/y.csv",
            filename="y.csv",
            rows=1,
            bytes=400,
            sha256="0" * 64,
            expires_at=now + timedelta(days=1),
        )
    )
    db_session.commit()
    before = db_session.query(Job).filter_by(org_id=tenant.org_id).count()
    refused = tenant.viewer.post("/api/v1/analytics/export", json=body | {"format": "json"})
    assert refused.status_code == 429, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "export_quota_exceeded"
    assert error["details"]["stored_bytes"] == 1000
    assert "EXPORT_QUOTA_BYTES" in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == before
