"""At most EXPORT_MAX_ACTIVE_PER_ORG exports of an organization are queued or running at once."""

from __future__ import annotations

import uuid
import zlib

import pytest
from sqlalchemy import text

from webapp.models import Job

BODY = {"format": "csv", "dataset": "tickets", "query": {}}


def _active_exports(db_session, org_id: int, states: list[str]) -> list[Job]:
    """Export jobs that hold a slot, as a busy worker leaves them (nothing is enqueued)."""
    jobs = [
        Job(
            id=uuid.uuid4(),
            org_id=org_id,
            kind="export",
            params={"n": i},
            params_hash=f"busy-{i}",
            state=state,
        )
        for i, state in enumerate(states)
    ]
    db_session.add_all(jobs)
    db_session.commit()
    return jobs


@pytest.fixture
def cap(app, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_MAX_ACTIVE_PER_ORG", 3)
    return 3


def test_the_cap_refuses_with_429_naming_it_until_a_slot_frees(make_tenant, db_session, cap):
    tenant = make_tenant()
    busy = _active_exports(db_session, tenant.org_id, ["queued", "running", "running"])

    refused = tenant.viewer.post("/api/v1/analytics/export", json=BODY)
    assert refused.status_code == 429, refused.get_json()
    error = refused.get_json()["error"]
    assert "EXPORT_MAX_ACTIVE_PER_ORG" in error["message"]
    assert "limit of 3" in error["message"]
    assert error["details"]["limit"] == 3
    assert error["details"]["active"] == 3
    assert int(refused.headers["Retry-After"]) > 0

    busy[0].state = "succeeded"
    db_session.commit()
    accepted = tenant.viewer.post("/api/v1/analytics/export", json=BODY)
    assert accepted.status_code == 202, accepted.get_json()
    # The accepted export takes the freed slot.
    assert tenant.viewer.post("/api/v1/analytics/export", json=BODY | {"format": "json"}).status_code == 429


def test_an_identical_active_export_is_reused_at_the_cap(make_tenant, db_session, cap):
    tenant = make_tenant()
    _active_exports(db_session, tenant.org_id, ["running", "running"])
    first = tenant.viewer.post("/api/v1/analytics/export", json=BODY)
    assert first.status_code == 202
    again = tenant.viewer.post("/api/v1/analytics/export", json=BODY)
    assert again.status_code == 202
    assert again.get_json()["job_id"] == first.get_json()["job_id"]
    assert again.get_json()["deduplicated"] is True
    assert tenant.viewer.post("/api/v1/analytics/export", json=BODY | {"format": "xlsx"}).status_code == 429


def test_the_cap_is_per_organization_and_other_jobs_do_not_count(make_tenant, db_session, cap):
    busy_org, other_org = make_tenant("Busy"), make_tenant("Other")
    _active_exports(db_session, busy_org.org_id, ["running"] * 3)
    db_session.add(Job(org_id=other_org.org_id, kind="snapshot", params={}, params_hash="s", state="running"))
    db_session.commit()
    assert busy_org.viewer.post("/api/v1/analytics/export", json=BODY).status_code == 429
    assert other_org.viewer.post("/api/v1/analytics/export", json=BODY).status_code == 202


def test_the_cap_follows_the_setting(make_tenant, db_session, app, monkeypatch):
    tenant = make_tenant()
    monkeypatch.setitem(app.config, "EXPORT_MAX_ACTIVE_PER_ORG", 1)
    assert tenant.viewer.post("/api/v1/analytics/export", json=BODY).status_code == 202
    refused = tenant.viewer.post("/api/v1/analytics/export", json=BODY | {"format": "json"})
    assert refused.status_code == 429
    assert "limit of 1" in refused.get_json()["error"]["message"]


def test_a_full_organization_is_refused_without_waiting_for_the_cap_lock(
    make_tenant, db_session, db_connection, db_engine, cap
):
    """A flood of refused exports must not line up behind a submission that holds the (org, export)
    lock while it commits: the full organization is refused after one look, with no lock taken."""
    tenant = make_tenant()
    _active_exports(db_session, tenant.org_id, ["running"] * 3)
    key = zlib.crc32(b"export") & 0x7FFFFFFF
    # Any wait for the lock fails at once instead of hanging the test.
    db_connection.execute(text("SET LOCAL lock_timeout = '500ms'"))
    with db_engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(:org, :key)"), {"org": tenant.org_id, "key": key})
        try:
            refused = tenant.viewer.post("/api/v1/analytics/export", json=BODY)
        finally:
            other.execute(text("SELECT pg_advisory_unlock(:org, :key)"), {"org": tenant.org_id, "key": key})
            other.commit()
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["code"] == "too_many_active_exports"
