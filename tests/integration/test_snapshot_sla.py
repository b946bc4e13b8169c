"""A snapshot counts SLA compliance under the policy in force when it is computed, as the
performance report does (the first contract's targets were used before)."""

from __future__ import annotations

from datetime import UTC, datetime

from webapp.analytics.snapshots import compute_snapshot

TARGETS = {
    "urgent": {"first_reply_hours": 1, "resolution_hours": 8, "next_reply_hours": None},
    "high": {"first_reply_hours": 4, "resolution_hours": 24, "next_reply_hours": None},
    "normal": {"first_reply_hours": 1, "resolution_hours": 24, "next_reply_hours": None},
    "low": {"first_reply_hours": None, "resolution_hours": None, "next_reply_hours": None},
}


def test_a_snapshot_counts_sla_under_the_policy_in_force(tenant, db_session):
    day = "2026-11-03"
    # Normal, answered after 2 h and never resolved: breached on both under the policy (1 h, 24 h),
    # its first reply met under the first contract's 8 h. Low, resolved after 3 h: measured on
    # nothing under the policy, met (resolution) and breached (no reply) under the first contract.
    normal = tenant.agent.post(
        "/api/v1/tickets", json={"created_at": f"{day}T09:00:00Z", "priority": "normal"}
    ).get_json()
    reply = tenant.agent.post(
        f"/api/v1/tickets/{normal['id']}/replies", json={"author": "agent", "at": f"{day}T11:00:00Z"}
    )
    assert reply.status_code == 201
    low = tenant.agent.post("/api/v1/tickets", json={"created_at": f"{day}T10:00:00Z", "priority": "low"})
    solved = tenant.agent.patch(
        f"/api/v1/tickets/{low.get_json()['id']}",
        json={"status": "resolved", "resolved_at": f"{day}T13:00:00Z"},
    )
    assert solved.status_code == 200, solved.get_json()
    put = tenant.admin.put(
        "/api/v1/sla-policy", json={"schedule_id": None, "pause_statuses": [], "targets": TARGETS}
    )
    assert put.status_code == 200, put.get_json()

    sla = compute_snapshot(
        db_session,
        org_id=tenant.org_id,
        snapshot_type="daily",
        snapshot_date=datetime(2026, 11, 3, tzinfo=UTC).date(),
    )["sla"]
    overall = sla["overall"]
    assert {k: overall["first_response"][k] for k in ("met", "breached", "pending")} == {
        "met": 0,
        "breached": 1,
        "pending": 0,
    }
    assert {k: overall["resolution"][k] for k in ("met", "breached", "pending")} == {
        "met": 0,
        "breached": 1,
        "pending": 0,
    }
    assert sla["by_priority"]["low"]["resolution"]["breached"] == 0
    assert sla["by_priority"]["low"]["resolution"]["met"] == 0
    # The same counts as the performance report over the same day.
    report = tenant.viewer.get(f"/api/v1/analytics/performance?start={day}&end=2026-11-04&tz=UTC").get_json()
    assert report["sla"]["overall"]["first_response"]["breached"] == 1
    assert report["sla"]["overall"]["resolution"] == overall["resolution"]
