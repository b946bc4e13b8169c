"""Each organization may have a capped number of jobs of each kind active (429 with Retry-After past
it, nothing stored or queued), and the jobs it adds while others are active wait in the overflow
queue, which workers take from in turn with the others."""

from __future__ import annotations

import uuid

import pytest
import redis

from webapp.core.vocabulary import OVERFLOW_QUEUE
from webapp.jobs import share
from webapp.models import Job

AGG = "/api/v1/analytics/aggregations"


def _busy(db_session, org_id: int, kind: str, count: int) -> None:
    db_session.add_all(
        Job(
            id=uuid.uuid4(),
            org_id=org_id,
            kind=kind,
            params={"n": i},
            params_hash=f"busy-{i}",
            state="running",
        )
        for i in range(count)
    )
    db_session.commit()


def _jobs(db_session, org_id: int, kind: str) -> int:
    return db_session.query(Job).filter_by(org_id=org_id, kind=kind).count()


@pytest.fixture
def queues(services):
    client = redis.Redis.from_url(services.redis_url)
    return client


def test_twelve_async_aggregations_are_four_202s_then_429s(make_tenant, app, db_session):
    tenant = make_tenant()
    answers = [
        tenant.viewer.post(
            AGG,
            json={
                "metrics": ["response_time"],
                "start": f"2026-0{1 + i % 9}-01",
                "async": True,
                "end": "2026-11-01",
                "percentiles": [10 + i],
            },
        )
        for i in range(12)
    ]
    limit = app.config["JOB_MAX_ACTIVE_PER_ORG"]["aggregation"]
    assert [a.status_code for a in answers] == [202] * limit + [429] * (12 - limit)
    refused = answers[-1]
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_active_jobs"
    assert error["details"] == {"kind": "aggregation", "limit": limit, "active": limit, "retry_after": 10}
    assert refused.headers["Retry-After"] == "10"
    assert _jobs(db_session, tenant.org_id, "aggregation") == limit


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        (
            "snapshot",
            lambda t: t.admin.post(
                "/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-01"}
            ),
        ),
        ("cache_refresh", lambda t: t.admin.post("/api/v1/analytics/refresh-cache")),
        ("import", lambda t: t.agent.post("/api/v1/tickets/import", json=[{"subject": "one"}])),
    ],
)
def test_every_kind_has_its_cap_and_identical_jobs_are_still_answered(
    make_tenant, app, db_session, kind, call
):
    tenant, other = make_tenant("Busy"), make_tenant("Other")
    limit = app.config["JOB_MAX_ACTIVE_PER_ORG"][kind]
    _busy(db_session, tenant.org_id, kind, limit)
    refused = call(tenant)
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["error"]["details"]["kind"] == kind
    assert _jobs(db_session, tenant.org_id, kind) == limit
    assert call(other).status_code == 202  # per organization


def test_an_identical_active_job_is_answered_at_the_cap(make_tenant, app, db_session):
    tenant = make_tenant()
    body = {"metrics": ["response_time"], "async": True}
    first = tenant.viewer.post(AGG, json=body)
    _busy(db_session, tenant.org_id, "aggregation", app.config["JOB_MAX_ACTIVE_PER_ORG"]["aggregation"] - 1)
    again = tenant.viewer.post(AGG, json=body)
    assert again.status_code == 202
    assert again.get_json()["job_id"] == first.get_json()["job_id"]


def test_jobs_added_while_others_are_active_wait_in_the_overflow_queue(make_tenant, queues):
    tenant = make_tenant()
    first = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-01"})
    second = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2026-03-02"})
    assert first.status_code == second.status_code == 202
    waiting = {queue: b"".join(queues.lrange(queue, 0, -1)) for queue in ("default", OVERFLOW_QUEUE)}
    assert first.get_json()["job_id"].encode() in waiting["default"] + waiting[OVERFLOW_QUEUE]
    assert second.get_json()["job_id"].encode() in waiting[OVERFLOW_QUEUE]


def test_an_organizations_running_share_is_held_as_slots(db_engine):
    """Two workers' connections: with a share of 1 the second delivery of one organization finds no
    slot until the first gives it back; another organization's finds its own."""
    with db_engine.connect() as first, db_engine.connect() as second:
        assert share.take_slot(first, 901, 1) == 0
        assert share.take_slot(second, 901, 1) is None
        assert share.take_slot(second, 902, 1) == 0
        assert share.take_slot(second, 901, 2) == 1
        share.release_slot(second, 901, 1)
        share.release_slot(first, 901, 0)
        assert share.take_slot(second, 901, 1) == 0
        share.release_slot(second, 901, 0)
        share.release_slot(second, 902, 0)
    # A connection that ends (a dead worker) gives its slots back.
    with db_engine.connect() as dying:
        assert share.take_slot(dying, 903, 1) == 0
        dying.invalidate()
    with db_engine.connect() as later:
        assert share.take_slot(later, 903, 1) == 0
        share.release_slot(later, 903, 0)
