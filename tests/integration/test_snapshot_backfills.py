"""Stored snapshots stay true: a back-fill or an import reaching a closed period makes its snapshot
stale, and beat's snapshot pass recomputes it on the real worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import wait_for_job
from webapp.analytics import snapshots

pytestmark = pytest.mark.worker

DAY = "2026-11-03"


def _snapshot(engine, org_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT data, stale FROM analytics_snapshots WHERE org_id = :o"
                " AND snapshot_type = 'daily' AND snapshot_date = :d"
            ),
            {"o": org_id, "d": DAY},
        ).one()


def _recompute(live_app, tenant) -> None:
    task = live_app.extensions["celery"].send_task(
        "snapshots.schedule_due", kwargs={"org_ids": [tenant.org_id]}
    )
    outcome = task.get(timeout=60)
    # The day's snapshot, and any other stored one holding the day (the month's, once beat stored it).
    assert outcome["recomputed"], outcome
    for job_id in outcome["recomputed"]:
        assert wait_for_job(tenant.viewer, job_id)["state"] == "succeeded"


def test_a_backfill_into_a_stored_period_recomputes_its_snapshot(
    celery_worker, make_live_tenant, live_app, monkeypatch
):
    engine = live_app.extensions["db_engine"]
    tenant = make_live_tenant("Snapshots")
    first = tenant.agent.post("/api/v1/tickets", json={"created_at": f"{DAY}T10:00:00Z"}).get_json()
    job = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": DAY}).get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    stored = _snapshot(engine, tenant.org_id)
    assert (stored.data["ticket_count"], stored.stale) == (1, False)
    assert stored.data["response_time"]["count"] == 0

    # A reply back-filled into the day answers the ticket then; a ticket back-filled into it.
    answer = tenant.agent.post(
        f"/api/v1/tickets/{first['id']}/replies", json={"author": "agent", "at": f"{DAY}T12:00:00Z"}
    )
    assert answer.status_code == 201
    tenant.agent.post("/api/v1/tickets", json={"created_at": f"{DAY}T15:00:00Z"})
    assert _snapshot(engine, tenant.org_id).stale is True
    # Listed before beat comes round, the stale snapshot is computed afresh for the answer.
    listed = tenant.viewer.get(
        f"/api/v1/analytics/snapshots?type=daily&start={DAY}&end=2026-11-04"
    ).get_json()
    [item] = listed["items"]
    assert (item["data"]["ticket_count"], item["data"]["response_time"]["count"], item["stale"]) == (
        2,
        1,
        False,
    )
    _recompute(live_app, tenant)
    stored = _snapshot(engine, tenant.org_id)
    assert (stored.data["ticket_count"], stored.stale) == (2, False)
    assert stored.data["response_time"]["count"] == 1
    assert stored.data["response_time"]["avg"] == pytest.approx(2.0)

    # An import landing in the day does the same.
    rows = [{"created_at": f"{DAY}T20:00:00Z", "status": "resolved", "resolved_at": f"{DAY}T21:00:00Z"}]
    submitted = tenant.agent.post(
        "/api/v1/tickets/import", data=json.dumps(rows), headers={"Content-Type": "application/json"}
    )
    assert wait_for_job(tenant.viewer, submitted.get_json()["job_id"])["state"] == "succeeded"
    assert _snapshot(engine, tenant.org_id).stale is True
    # Past the listing's share of fresh computations, a stale one is listed as stored, and says so.
    monkeypatch.setattr(snapshots, "FRESHENED_PER_LISTING", 0)
    listed = tenant.viewer.get(
        f"/api/v1/analytics/snapshots?type=daily&start={DAY}&end=2026-11-04"
    ).get_json()
    assert [(i["data"]["ticket_count"], i["stale"]) for i in listed["items"]] == [(2, True)]
    _recompute(live_app, tenant)
    stored = _snapshot(engine, tenant.org_id)
    assert (stored.data["ticket_count"], stored.data["resolution_time"]["count"]) == (3, 1)


def test_a_public_reply_makes_the_snapshot_of_its_tickets_creation_stale(
    celery_worker, make_live_tenant, live_app
):
    """A customer's reply after an agent's writes no event, but the SLA next_reply counts of the day
    the ticket was created move: that day's snapshot is stale, and listed it is computed afresh. A
    private note changes nothing. An agent's first reply a day late does the same for first_reply."""
    engine = live_app.extensions["db_engine"]
    tenant = make_live_tenant("Snapshot replies")
    targets = {
        p: {"first_reply_hours": 8, "next_reply_hours": 2, "resolution_hours": 48}
        for p in ("low", "normal", "high", "urgent")
    }
    assert tenant.admin.put("/api/v1/sla-policy", json={"targets": targets}).status_code == 200
    ticket = tenant.agent.post("/api/v1/tickets", json={"created_at": f"{DAY}T08:00:00Z"}).get_json()
    replies = f"/api/v1/tickets/{ticket['id']}/replies"
    assert tenant.agent.post(replies, json={"author": "agent", "at": f"{DAY}T09:00:00Z"}).status_code == 201
    job = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": DAY}).get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    stored = _snapshot(engine, tenant.org_id)
    assert stored.stale is False
    assert stored.data["sla"]["next_reply"]["met"] == 1

    note = {"author": "agent", "public": False, "at": f"{DAY}T10:00:00Z"}
    assert tenant.agent.post(replies, json=note).status_code == 201
    assert _snapshot(engine, tenant.org_id).stale is False

    # The customer wrote the next day at 10:00 and nobody answered by 12:00: breached. The snapshot
    # counting it is the day the ticket was created, not the day of the reply.
    customer = {"author": "customer", "at": "2026-11-04T10:00:00Z"}
    assert tenant.agent.post(replies, json=customer).status_code == 201
    assert _snapshot(engine, tenant.org_id).stale is True
    listed = tenant.viewer.get(
        f"/api/v1/analytics/snapshots?type=daily&start={DAY}&end=2026-11-04"
    ).get_json()
    [item] = listed["items"]
    assert item["stale"] is False
    assert (item["data"]["sla"]["next_reply"]["met"], item["data"]["sla"]["next_reply"]["breached"]) == (0, 1)

    # A ticket of the day answered only the next day: its first reply breached (8 h), counted there.
    late = tenant.agent.post("/api/v1/tickets", json={"created_at": f"{DAY}T20:00:00Z"}).get_json()
    job = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": DAY}).get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    assert _snapshot(engine, tenant.org_id).stale is False
    answer = {"author": "agent", "at": "2026-11-05T12:00:00Z"}
    assert tenant.agent.post(f"/api/v1/tickets/{late['id']}/replies", json=answer).status_code == 201
    assert _snapshot(engine, tenant.org_id).stale is True
