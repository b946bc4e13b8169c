"""SLA policy and per-ticket SLA routes against independent computations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import redis

from tests.integration.sla_tickets import seed_ticket
from tests.unit.test_business_time import Reference
from webapp.analytics.generations import gen_key
from webapp.clocks.business_time import Interval, WeeklySchedule
from webapp.core.timeutil import utcnow
from webapp.models import Organization

PRIORITIES = ("urgent", "high", "normal", "low")
H = timedelta(hours=1)
OFFICE = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]


def _targets(first=None, next_=None, resolution=None):
    one = {"first_reply_hours": first, "next_reply_hours": next_, "resolution_hours": resolution}
    return {p: dict(one) for p in PRIORITIES}


def _sla(api, ticket_id):
    response = api.get(f"/api/v1/tickets/{ticket_id}/sla")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return body, {t["metric"]: t for t in body["targets"]}


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_the_default_policy_is_the_first_contracts_targets(tenant):
    body = tenant.viewer.get("/api/v1/sla-policy").get_json()
    assert body["policy_clock"] == "calendar"
    assert (body["schedule_id"], body["pause_statuses"], body["default"]) == (None, [], True)
    expected = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 48), "low": (24, 120)}
    for priority, (first, resolution) in expected.items():
        assert body["targets"][priority] == {
            "first_reply_hours": first,
            "next_reply_hours": None,
            "resolution_hours": resolution,
        }


def test_the_organizations_own_targets_carry_over(tenant, db_session):
    org = db_session.get(Organization, tenant.org_id)
    org.sla_targets = {
        "high": {"first_response_hours": 2, "resolution_hours": 10},
        "low": {"resolution_hours": 200},
    }
    db_session.commit()
    body = tenant.viewer.get("/api/v1/sla-policy").get_json()
    assert body["targets"]["high"] == {
        "first_reply_hours": 2,
        "next_reply_hours": None,
        "resolution_hours": 10,
    }
    assert body["targets"]["low"] == {
        "first_reply_hours": 24,
        "next_reply_hours": None,
        "resolution_hours": 200,
    }


def test_put_replaces_the_policy_and_bumps_its_cache_generation(tenant, services):
    client = redis.Redis.from_url(services.redis_url)
    before = int(client.get(gen_key(tenant.org_id, "sla")) or 0)
    schedule = tenant.admin.post(
        "/api/v1/schedules", json={"name": "Office", "timezone": "UTC", "intervals": OFFICE}
    ).get_json()
    targets = _targets(first=2, next_=1.5, resolution=16)
    targets["low"] = {"first_reply_hours": None, "next_reply_hours": None, "resolution_hours": 40}
    put = tenant.admin.put(
        "/api/v1/sla-policy",
        json={"schedule_id": schedule["id"], "pause_statuses": ["on_hold", "pending"], "targets": targets},
    )
    assert put.status_code == 200, put.get_json()
    body = tenant.viewer.get("/api/v1/sla-policy").get_json()
    assert body == put.get_json()
    assert (body["policy_clock"], body["schedule_id"], body["default"], body["version"]) == (
        "business",
        schedule["id"],
        False,
        1,
    )
    assert body["pause_statuses"] == ["pending", "on_hold"]
    assert body["targets"] == targets
    # Omitted targets are null; the version counts the changes.
    again = tenant.admin.put("/api/v1/sla-policy", json={"targets": {p: {} for p in PRIORITIES}}).get_json()
    assert again["version"] == 2
    assert again["policy_clock"] == "calendar"
    assert again["targets"]["urgent"] == {
        "first_reply_hours": None,
        "next_reply_hours": None,
        "resolution_hours": None,
    }
    assert int(client.get(gen_key(tenant.org_id, "sla"))) == before + 2


BAD_POLICIES = [
    ("a solved status pauses", {"pause_statuses": ["resolved"]}, "pause_statuses.0"),
    ("an unknown status", {"pause_statuses": ["waiting"]}, "pause_statuses.0"),
    ("a status twice", {"pause_statuses": ["pending", "pending"]}, "pause_statuses.1"),
    (
        "zero hours",
        {"targets": {**_targets(first=1), "high": {"first_reply_hours": 0}}},
        "targets.high.first_reply_hours",
    ),
    (
        "negative hours",
        {"targets": {**_targets(first=1), "low": {"resolution_hours": -2}}},
        "targets.low.resolution_hours",
    ),
    (
        "text hours",
        {"targets": {**_targets(first=1), "low": {"resolution_hours": "2"}}},
        "targets.low.resolution_hours",
    ),
    ("centuries", {"targets": _targets(first=10**6)}, "targets.urgent.first_reply_hours"),
    ("a missing priority", {"targets": {p: {} for p in PRIORITIES[:3]}}, "targets.low"),
    ("an unknown priority", {"targets": {**_targets(), "critical": {}}}, "targets.critical"),
    (
        "an unknown metric",
        {"targets": {**_targets(), "high": {"first_response_hours": 1}}},
        "targets.high.first_response_hours",
    ),
    ("no targets", {"targets": None}, "targets"),
    ("a schedule id as text", {"schedule_id": "1"}, "schedule_id"),
]


@pytest.mark.parametrize(("case", "changes", "field"), BAD_POLICIES, ids=[c[0] for c in BAD_POLICIES])
def test_bad_policies_are_400_naming_the_field(tenant, case, changes, field):
    body = {"schedule_id": None, "pause_statuses": [], "targets": _targets(first=1), **changes}
    response = tenant.admin.put("/api/v1/sla-policy", json=body)
    assert response.status_code == 400, (case, response.get_json())
    error = response.get_json()["error"]
    fields = [error["details"].get("field")] + [e["field"] for e in error["details"].get("errors", [])]
    assert field in fields, (case, error)
    assert tenant.viewer.get("/api/v1/sla-policy").get_json()["default"] is True


def test_another_organizations_schedule_is_404_and_only_admins_put(make_tenant):
    owner = make_tenant("Owner")
    other = make_tenant("Other")
    schedule = owner.admin.post(
        "/api/v1/schedules", json={"name": "O", "timezone": "UTC", "intervals": OFFICE}
    ).get_json()
    body = {"schedule_id": schedule["id"], "targets": _targets(first=1)}
    assert other.admin.put("/api/v1/sla-policy", json=body).status_code == 404
    assert other.admin.put("/api/v1/sla-policy", json={**body, "schedule_id": 2**62}).status_code == 404
    for role in ("viewer", "agent"):
        assert owner.apis[role].put("/api/v1/sla-policy", json=body).status_code == 403
    assert owner.admin.put("/api/v1/sla-policy", json=body).status_code == 200


def test_ticket_targets_on_the_calendar_clock(tenant, db_session):
    now = utcnow()
    created = now - 3 * H
    waiting = tenant.agent.post(
        "/api/v1/tickets", json={"priority": "urgent", "created_at": created.isoformat()}
    ).get_json()
    body, targets = _sla(tenant.viewer, waiting["id"])
    assert (body["policy_clock"], body["schedule_id"]) == ("calendar", None)
    assert set(targets) == {"first_reply", "resolution"}  # next_reply is null by default
    # Urgent: 1 hour to reply, 4 to resolve; 3 hours have passed.
    assert targets["first_reply"]["state"] == "breached"
    assert targets["first_reply"]["breach_at"] is None
    assert targets["first_reply"]["elapsed_hours"] == pytest.approx(3, abs=0.01)
    assert targets["resolution"]["state"] == "active"
    assert _iso(targets["resolution"]["breach_at"]) == created + 4 * H
    answered = tenant.agent.post(
        "/api/v1/tickets",
        json={
            "priority": "high",
            "status": "closed",
            "created_at": (now - 30 * H).isoformat(),
            "first_response_at": (now - 27 * H).isoformat(),
            "resolved_at": (now - 5 * H).isoformat(),
        },
    ).get_json()
    _, targets = _sla(tenant.viewer, answered["id"])
    # High: 4 hours to reply (3 taken), 24 to resolve (25 taken).
    assert (targets["first_reply"]["state"], targets["first_reply"]["elapsed_hours"]) == (
        "achieved",
        pytest.approx(3),
    )
    assert (targets["resolution"]["state"], targets["resolution"]["elapsed_hours"]) == (
        "breached",
        pytest.approx(25),
    )
    assert tenant.viewer.get("/api/v1/tickets/999999999/sla").status_code == 404


def test_pauses_and_reopens_count_only_running_time(tenant, db_session):
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    history = [
        (start, "open"),
        (start + 2 * H, "pending"),
        (start + 7 * H, "open"),
        (start + 8 * H, "resolved"),
        (start + 30 * H, "open"),
        (start + 31 * H, "on_hold"),
    ]
    ticket_id = seed_ticket(
        db_session, tenant.org_id, history, priority="normal", first_response_at=start + H
    )
    tenant.admin.put(
        "/api/v1/sla-policy",
        json={"pause_statuses": ["pending", "on_hold"], "targets": _targets(first=2, resolution=5)},
    )
    _, targets = _sla(tenant.viewer, ticket_id)
    # Running: open 2 h, open again 1 h, reopened 1 h: 4 of 5 hours; on hold now.
    assert targets["resolution"] == {
        "metric": "resolution",
        "state": "paused",
        "target_hours": 5.0,
        "elapsed_hours": 4.0,
        "breach_at": None,
    }
    assert targets["first_reply"]["state"] == "achieved"
    # Without pauses the pending hours count: 2 + 5 + 1 + 1 + the on_hold time since.
    tenant.admin.put("/api/v1/sla-policy", json={"targets": _targets(resolution=5)})
    _, targets = _sla(tenant.viewer, ticket_id)
    assert targets["resolution"]["state"] == "breached"
    assert targets["resolution"]["elapsed_hours"] == pytest.approx(
        9 + (utcnow() - (start + 31 * H)) / H, abs=0.01
    )


def test_business_hours_and_a_breach_moved_past_holidays(tenant, db_session):
    holidays = [{"date": "2026-11-26", "name": "Closed"}, {"date": "2026-11-27", "name": "Closed"}]
    schedule = tenant.admin.post(
        "/api/v1/schedules",
        json={
            "name": "Berlin office",
            "timezone": "Europe/Berlin",
            "intervals": OFFICE,
            "holidays": holidays,
        },
    ).get_json()
    tenant.admin.put(
        "/api/v1/sla-policy",
        json={
            "schedule_id": schedule["id"],
            "pause_statuses": ["pending"],
            "targets": _targets(first=4, resolution=12),
        },
    )
    reference = Reference(
        WeeklySchedule(
            "Europe/Berlin",
            tuple(Interval(d, 9 * 3600, 17 * 3600) for d in range(5)),
            frozenset({date(2026, 11, 26), date(2026, 11, 27)}),
        )
    )
    # Created Wednesday 25 November 14:00 Berlin; Thursday and Friday are holidays; answered on
    # Monday at 09:30. Pending from Wednesday 16:00 until that answer.
    created = datetime(2026, 11, 25, 13, tzinfo=UTC)
    answered = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
    history = [(created, "open"), (created + 2 * H, "pending"), (answered, "open")]
    ticket_id = seed_ticket(db_session, tenant.org_id, history, priority="high", first_response_at=answered)
    body, targets = _sla(tenant.viewer, ticket_id)
    assert (body["policy_clock"], body["schedule_id"]) == ("business", schedule["id"])
    # 3 hours on Wednesday, none on the holidays or the weekend, half an hour on Monday (the
    # calendar clock would have breached on Wednesday at 18:00).
    assert reference.open_seconds(created, answered) == 3.5 * 3600
    assert targets["first_reply"]["state"] == "achieved"
    assert targets["first_reply"]["elapsed_hours"] == 3.5
    now = _iso(body["evaluated_at"])
    running = reference.open_seconds(created, created + 2 * H) + reference.open_seconds(answered, now)
    assert targets["resolution"]["elapsed_hours"] == pytest.approx(running / 3600, abs=1e-6)
    assert targets["resolution"]["state"] == "breached"


def _reply(api, ticket_id, author, at, public=True):
    response = api.post(
        f"/api/v1/tickets/{ticket_id}/replies",
        json={"author": author, "at": at.isoformat(), "public": public},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_replies_stop_first_reply_and_make_next_reply_pairs(tenant):
    now = utcnow().replace(microsecond=0)
    tenant.admin.put(
        "/api/v1/sla-policy",
        json={
            "pause_statuses": ["pending", "on_hold"],
            "targets": _targets(first=2, next_=3, resolution=100),
        },
    )
    start = now - 30 * H
    a = tenant.agent.post("/api/v1/tickets", json={"created_at": start.isoformat()}).get_json()
    # A customer reply before any agent reply starts nothing; the first agent reply stops first_reply
    # (and sets first_response_at); three customer replies in a row start one pair (2 h -> 6 h: 4 h,
    # over the 3 h target); a private customer reply starts nothing; the next pair takes 1 h.
    _reply(tenant.agent, a["id"], "customer", start + 0.5 * H)
    first = _reply(tenant.agent, a["id"], "agent", start + H)
    assert first["ticket"]["first_response_at"] == (start + H).isoformat()
    for hours in (2, 2.5, 4):
        _reply(tenant.agent, a["id"], "customer", start + hours * H)
    _reply(tenant.agent, a["id"], "agent", start + 6 * H)
    _reply(tenant.agent, a["id"], "customer", start + 6.5 * H, public=False)
    _reply(tenant.agent, a["id"], "customer", start + 7 * H)
    _reply(tenant.agent, a["id"], "agent", start + 8 * H)
    # Paused and reopened: next_reply has no pause, resolution counts only running time.
    tenant.agent.patch(f"/api/v1/tickets/{a['id']}", json={"status": "pending"})
    _, targets = _sla(tenant.viewer, a["id"])
    assert (targets["first_reply"]["state"], targets["first_reply"]["elapsed_hours"]) == ("achieved", 1.0)
    assert targets["next_reply"]["state"] == "breached"
    assert targets["next_reply"]["elapsed_hours"] == pytest.approx(1.0)  # the latest pair's
    assert targets["next_reply"]["breach_at"] is None
    assert targets["resolution"]["state"] == "paused"

    b = tenant.agent.post("/api/v1/tickets", json={"created_at": (now - 5 * H).isoformat()}).get_json()
    _reply(tenant.agent, b["id"], "agent", now - 4 * H)
    _reply(tenant.agent, b["id"], "customer", now - 2 * H)
    _reply(tenant.agent, b["id"], "customer", now - H)
    tenant.agent.patch(f"/api/v1/tickets/{b['id']}", json={"status": "resolved"})
    tenant.agent.patch(f"/api/v1/tickets/{b['id']}", json={"status": "open"})
    _, targets = _sla(tenant.viewer, b["id"])
    assert targets["next_reply"]["state"] == "active"
    assert targets["next_reply"]["elapsed_hours"] == pytest.approx(2.0, abs=0.01)
    assert _iso(targets["next_reply"]["breach_at"]) == now + H
    # A back-filled agent reply before first_response_at stops first_reply there.
    c = tenant.agent.post(
        "/api/v1/tickets",
        json={"created_at": (now - 10 * H).isoformat(), "first_response_at": (now - 2 * H).isoformat()},
    ).get_json()
    _reply(tenant.agent, c["id"], "agent", now - 9 * H)
    _, targets = _sla(tenant.viewer, c["id"])
    assert (targets["first_reply"]["state"], targets["first_reply"]["elapsed_hours"]) == ("achieved", 1.0)
