"""The breach sweep on the real worker (and under a real beat): every breach once, at its instant."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import text

from tests.conftest import beat_process, wait_for_job
from webapp.core.timeutil import utcnow

pytestmark = pytest.mark.worker
H = timedelta(hours=1)
PRIORITIES = ("urgent", "high", "normal", "low")


@pytest.fixture
def engine(live_app):
    return live_app.extensions["db_engine"]


@pytest.fixture
def sweep(live_app):
    """Run beat's task on the worker for these organizations; its result."""

    def run(*org_ids: int) -> dict[str, Any]:
        task = live_app.extensions["celery"].send_task(
            "sla.record_breaches", kwargs={"org_ids": list(org_ids)}
        )
        return task.get(timeout=60)

    return run


def _rows(engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def _breaches(engine, org_id):
    return {
        (r.ticket_id, r.metric): r.breach_at
        for r in _rows(
            engine, "SELECT ticket_id, metric, breach_at FROM sla_breaches WHERE org_id = :o", o=org_id
        )
    }


def _events(engine, org_id):
    return _rows(
        engine,
        "SELECT ticket_id, occurred_at, status, priority, assigned_to, detail FROM ticket_events"
        " WHERE org_id = :o AND event_type = 'sla_breached' ORDER BY ticket_id, occurred_at",
        o=org_id,
    )


def _clocks(engine, org_id):
    return {
        (r.ticket_id, r.metric): r.breach_at
        for r in _rows(
            engine, "SELECT ticket_id, metric, breach_at FROM sla_clocks WHERE org_id = :o", o=org_id
        )
    }


def _stream(services, org_id, kind):
    client = redis.Redis.from_url(services.redis_url)
    return [
        json.loads(fields[b"data"])
        for _, fields in client.xrange(f"an:events:{org_id}")
        if fields[b"type"].decode() == kind
    ]


def _ticket(api, **fields):
    response = api.post("/api/v1/tickets", json=fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_breaches_are_recorded_once_at_their_instant_and_fresh_ones_pushed(
    celery_worker, make_live_tenant, engine, sweep, services
):
    tenant = make_live_tenant()
    now = utcnow()
    old = _ticket(tenant.agent, priority="urgent", assigned_to="ana", created_at=(now - 3 * H).isoformat())
    fresh = _ticket(tenant.agent, priority="urgent", created_at=(now - 61 * timedelta(minutes=1)).isoformat())
    calm = _ticket(tenant.agent, priority="low", created_at=(now - 3 * H).isoformat())
    # Reassigned after its breach: the event keeps the assignee of the breach instant.
    tenant.agent.patch(f"/api/v1/tickets/{old['id']}", json={"assigned_to": "bo"})
    created = {t["id"]: datetime.fromisoformat(t["created_at"]) for t in (old, fresh, calm)}

    outcome = sweep(tenant.org_id)
    assert outcome["recorded"] == 2
    # Urgent: first reply within 1 hour. Both urgent tickets are past it; the low one (24 h) is not.
    assert _breaches(engine, tenant.org_id) == {
        (old["id"], "first_reply"): created[old["id"]] + H,
        (fresh["id"], "first_reply"): created[fresh["id"]] + H,
    }
    events = _events(engine, tenant.org_id)
    assert [(e.ticket_id, e.occurred_at) for e in events] == [
        (old["id"], created[old["id"]] + H),
        (fresh["id"], created[fresh["id"]] + H),
    ]
    assert (events[0].status, events[0].priority, events[0].assigned_to) == ("open", "urgent", "ana")
    assert events[0].detail == {
        "metric": "first_reply",
        "target_hours": 1.0,
        "cycle_start": created[old["id"]].isoformat(),
        "policy_clock": "calendar",
    }
    # Running targets wait in sla_clocks: resolution (4 h urgent, 120 h low) and the low first reply.
    assert _clocks(engine, tenant.org_id) == {
        (old["id"], "resolution"): created[old["id"]] + 4 * H,
        (fresh["id"], "resolution"): created[fresh["id"]] + 4 * H,
        (calm["id"], "first_reply"): created[calm["id"]] + 24 * H,
        (calm["id"], "resolution"): created[calm["id"]] + 120 * H,
    }
    # Both are news on the socket's stream: the breach of a minute ago, and the one of two hours ago
    # whose ticket still waits for its first reply (found late: the ticket was written back-dated).
    pushed = _stream(services, tenant.org_id, "sla_breach")
    assert sorted((p["ticket_id"], p["metric"]) for p in pushed) == [
        (old["id"], "first_reply"),
        (fresh["id"], "first_reply"),
    ]
    by_ticket = {p["ticket_id"]: p for p in pushed}
    assert datetime.fromisoformat(by_ticket[fresh["id"]]["breach_at"]) == created[fresh["id"]] + H
    assert datetime.fromisoformat(by_ticket[old["id"]]["breach_at"]) == created[old["id"]] + H

    # Nothing is recorded twice, however often the sweep runs.
    assert sweep(tenant.org_id)["recorded"] == 0
    assert len(_events(engine, tenant.org_id)) == 2
    # The per-ticket answer agrees.
    targets = {
        t["metric"]: t for t in tenant.viewer.get(f"/api/v1/tickets/{old['id']}/sla").get_json()["targets"]
    }
    assert targets["first_reply"]["state"] == "breached"
    assert datetime.fromisoformat(targets["resolution"]["breach_at"]) == created[old["id"]] + 4 * H


def test_a_late_breach_is_pushed_while_its_target_runs_and_history_is_not(
    celery_worker, make_live_tenant, engine, sweep, services
):
    tenant = make_live_tenant()
    now = utcnow()
    # Normal: first reply within 8 hours. Made urgent (1 hour) after two hours of waiting, its target
    # is passed at once, an hour ago: recorded at that instant and pushed, as it still waits.
    waiting = _ticket(tenant.agent, priority="normal", created_at=(now - 2 * H).isoformat())
    assert sweep(tenant.org_id)["recorded"] == 0
    made_urgent = tenant.agent.patch(f"/api/v1/tickets/{waiting['id']}", json={"priority": "urgent"})
    assert made_urgent.status_code == 200, made_urgent.get_json()
    # History written all at once: answered late three hours ago, then solved. Its breach is recorded
    # but is no news.
    history = _ticket(
        tenant.agent,
        priority="urgent",
        created_at=(now - 6 * H).isoformat(),
        first_response_at=(now - 3 * H).isoformat(),
        status="closed",
        resolved_at=(now - 3 * H).isoformat(),
    )
    assert sweep(tenant.org_id)["recorded"] == 2
    created = datetime.fromisoformat(waiting["created_at"])
    assert _breaches(engine, tenant.org_id) == {
        (waiting["id"], "first_reply"): created + H,
        (history["id"], "first_reply"): datetime.fromisoformat(history["created_at"]) + H,
    }
    pushed = _stream(services, tenant.org_id, "sla_breach")
    assert [(p["ticket_id"], p["metric"], p["priority"]) for p in pushed] == [
        (waiting["id"], "first_reply", "urgent")
    ]
    assert datetime.fromisoformat(pushed[0]["breach_at"]) == created + H
    # A paused ticket's resolution: on hold, then made urgent (4 hours to resolve after 6 open ones):
    # breached at once though its clock stands still, and news, as the ticket waits unsolved.
    held = _ticket(
        tenant.agent,
        priority="low",
        created_at=(now - 6 * H).isoformat(),
        first_response_at=(now - 6 * H + timedelta(minutes=5)).isoformat(),
    )
    targets = {p: {"first_reply_hours": 24, "resolution_hours": 120} for p in PRIORITIES}
    targets["urgent"] = {"first_reply_hours": 1, "resolution_hours": 4}
    put = tenant.admin.put("/api/v1/sla-policy", json={"pause_statuses": ["on_hold"], "targets": targets})
    assert put.status_code == 200, put.get_json()
    assert tenant.agent.patch(f"/api/v1/tickets/{held['id']}", json={"status": "on_hold"}).status_code == 200
    sweep(tenant.org_id)
    assert tenant.agent.patch(f"/api/v1/tickets/{held['id']}", json={"priority": "urgent"}).status_code == 200
    sweep(tenant.org_id)
    late = [p for p in _stream(services, tenant.org_id, "sla_breach") if p["ticket_id"] == held["id"]]
    assert [(p["metric"], p["priority"]) for p in late] == [("resolution", "urgent")]


def test_concurrent_sweeps_record_each_breach_once(celery_worker, make_live_tenant, engine, live_app):
    tenant = make_live_tenant()
    base = utcnow() - 10 * H
    ids = [
        _ticket(tenant.agent, priority="urgent", created_at=(base + timedelta(minutes=i)).isoformat())["id"]
        for i in range(40)
    ]
    celery = live_app.extensions["celery"]
    runs = [celery.send_task("sla.record_breaches", kwargs={"org_ids": [tenant.org_id]}) for _ in range(4)]
    assert sum(run.get(timeout=60)["recorded"] for run in runs) == 80
    breaches = _breaches(engine, tenant.org_id)
    # Urgent: a reply within 1 hour and a resolution within 4, both long past for every ticket.
    assert len(breaches) == 80
    assert {t for t, _ in breaches} == set(ids)
    counts = _rows(
        engine,
        "SELECT ticket_id, count(*) AS n FROM ticket_events WHERE org_id = :o AND event_type = 'sla_breached'"
        " GROUP BY ticket_id",
        o=tenant.org_id,
    )
    assert {r.n for r in counts} == {2}
    assert _clocks(engine, tenant.org_id) == {}


def test_an_answer_or_a_stale_clock_records_no_breach(celery_worker, make_live_tenant, engine, sweep):
    tenant = make_live_tenant()
    ticket = _ticket(
        tenant.agent, priority="urgent", created_at=(utcnow() - 30 * timedelta(minutes=1)).isoformat()
    )
    created = datetime.fromisoformat(ticket["created_at"])
    sweep(tenant.org_id)
    assert _clocks(engine, tenant.org_id)[(ticket["id"], "first_reply")] == created + H
    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"first_response_at": utcnow().isoformat()})
    # A clock that says "due" while the ticket is fine (as after a lost sweep) is checked, not trusted.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE sla_clocks SET breach_at = now() - interval '1 minute' WHERE ticket_id = :t"),
            {"t": ticket["id"]},
        )
    assert sweep(tenant.org_id)["recorded"] == 0
    assert _breaches(engine, tenant.org_id) == {}
    assert _clocks(engine, tenant.org_id) == {(ticket["id"], "resolution"): created + 4 * H}


def _noon_hours(start: datetime, end: datetime, minutes: int) -> float:
    """Open seconds in [start, end) of a schedule open from 12:00 UTC for `minutes` every day."""
    total = 0.0
    day = datetime.combine(start.date(), datetime.min.time(), tzinfo=UTC)
    while day < end:
        opens, closes = day + 12 * H, day + 12 * H + timedelta(minutes=minutes)
        total += max(0.0, (min(end, closes) - max(start, opens)).total_seconds())
        day += timedelta(days=1)
    return total


def test_policy_and_schedule_changes_move_running_clocks(celery_worker, make_live_tenant, engine, sweep):
    tenant = make_live_tenant()
    created = utcnow() - 2 * H
    ticket = _ticket(
        tenant.agent,
        priority="normal",
        status="pending",
        created_at=created.isoformat(),
        first_response_at=(created + timedelta(minutes=5)).isoformat(),
    )
    created = datetime.fromisoformat(ticket["created_at"])
    sweep(tenant.org_id)
    # The default policy: 48 hours to resolve a normal ticket, pending counting (no pauses).
    assert _clocks(engine, tenant.org_id) == {(ticket["id"], "resolution"): created + 48 * H}

    targets = {p: {"first_reply_hours": 1, "resolution_hours": 300} for p in PRIORITIES}
    put = tenant.admin.put("/api/v1/sla-policy", json={"pause_statuses": ["pending"], "targets": targets})
    assert put.status_code == 200
    sweep(tenant.org_id)
    # Pending since creation, and pending now pauses: nothing runs, nothing to watch.
    assert _clocks(engine, tenant.org_id) == {}
    tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "open"})
    reopened = _rows(
        engine,
        "SELECT occurred_at FROM ticket_events WHERE ticket_id = :t AND event_type = 'status_changed'",
        t=ticket["id"],
    )[0].occurred_at
    sweep(tenant.org_id)
    assert _clocks(engine, tenant.org_id) == {(ticket["id"], "resolution"): reopened + 300 * H}

    every_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    schedule = tenant.admin.post(
        "/api/v1/schedules",
        json={
            "name": "Noon",
            "timezone": "UTC",
            "intervals": [{"day": d, "start": "12:00", "end": "13:00"} for d in every_day],
        },
    ).get_json()
    body = {"schedule_id": schedule["id"], "pause_statuses": ["pending"], "targets": targets}
    assert tenant.admin.put("/api/v1/sla-policy", json=body).status_code == 200
    sweep(tenant.org_id)
    # On an hour a day, the same 300 hours take some 300 days; the sweep looks again at the first
    # instant after which more than 300 hours have run: the clock runs in the second after it (the
    # hours, whole, are complete at a closing time, so that is the next day's opening).
    business = _clocks(engine, tenant.org_id)[(ticket["id"], "resolution")]
    # (float seconds summed over some 300 days: equal to a microsecond)
    assert _noon_hours(reopened, business, 60) == pytest.approx(300 * 3600, abs=1e-3)
    assert _noon_hours(business, business + timedelta(seconds=1), 60) == pytest.approx(1, abs=1e-6)
    assert (business.hour, business.minute) == (12, 0)
    # Narrowing the schedule to half an hour a day moves the running clock again.
    narrowed = [{"day": d, "start": "12:00", "end": "12:30"} for d in every_day]
    tenant.admin.patch(f"/api/v1/schedules/{schedule['id']}", json={"intervals": narrowed})
    sweep(tenant.org_id)
    later = _clocks(engine, tenant.org_id)[(ticket["id"], "resolution")]
    assert _noon_hours(reopened, later, 30) == pytest.approx(300 * 3600, abs=1e-3)
    assert timedelta(days=590) < later - business < timedelta(days=610) or later - reopened > timedelta(
        days=598
    )


def test_imported_tickets_get_clocks_and_breaches(celery_worker, make_live_tenant, engine, sweep, live_app):
    tenant = make_live_tenant()
    created = (utcnow() - 5 * H).replace(microsecond=0)
    rows = [
        {"subject": "imported", "priority": "urgent", "created_at": created.isoformat()},
        {
            "subject": "answered",
            "priority": "urgent",
            "created_at": created.isoformat(),
            "first_response_at": (created + 10 * timedelta(minutes=1)).isoformat(),
            "status": "closed",
            "resolved_at": (created + H).isoformat(),
        },
    ]
    client = live_app.test_client()
    response = client.post(
        "/api/v1/tickets/import",
        data=json.dumps(rows),
        headers={"Authorization": f"Bearer {tenant.agent.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.get_json()
    assert wait_for_job(tenant.viewer, response.get_json()["job_id"])["state"] == "succeeded"
    sweep(tenant.org_id)
    breaches = _breaches(engine, tenant.org_id)
    assert sorted(m for _, m in breaches) == ["first_reply", "resolution"]
    assert set(breaches.values()) == {created + H, created + 4 * H}


def test_an_import_of_old_open_tickets_pushes_a_few_late_breaches_per_sweep(
    celery_worker, make_live_tenant, engine, sweep, live_app, services
):
    """Found from outside: 5,000 old open tickets imported pushed 1,250 sla_breach messages in 10 s
    (the late cap held per batch of the sweep, not per sweep), and one metric_update per batch of 400.
    Every breach is recorded; a sweep pushes at most LATE_PUSHES late ones per organization, however
    many batches it takes, and one metric_update counting them all."""
    from webapp.clocks.tracking import BATCH, LATE_PUSHES

    tenant = make_live_tenant()
    created = (utcnow() - timedelta(days=30)).replace(microsecond=0)
    count = 3 * BATCH  # several batches of the sweep; a first reply and a resolution breach each
    rows = [
        {
            "subject": f"old {n}",
            "priority": "low",
            "created_at": (created + n * timedelta(minutes=3)).isoformat(),
        }
        for n in range(count)
    ]
    response = live_app.test_client().post(
        "/api/v1/tickets/import",
        data=json.dumps(rows),
        headers={"Authorization": f"Bearer {tenant.agent.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.get_json()
    assert wait_for_job(tenant.viewer, response.get_json()["job_id"])["state"] == "succeeded"
    results = [sweep(tenant.org_id)]
    while len(_breaches(engine, tenant.org_id)) < 2 * count and len(results) < 5:
        results.append(sweep(tenant.org_id))
    assert len(_breaches(engine, tenant.org_id)) == 2 * count
    assert results[0]["recorded"] > BATCH  # one sweep worked several batches
    assert all(result["pushed"] <= LATE_PUSHES for result in results), results
    assert len(_stream(services, tenant.org_id, "sla_breach")) == sum(r["pushed"] for r in results)
    # Live pages are told once a sweep (they redrew once a batch), the count covering every breach.
    told = [u for u in _stream(services, tenant.org_id, "metric_update") if "sla_breaches" in u]
    assert len(told) == sum(1 for r in results if r["recorded"])
    assert told[0]["sla_breaches"] == results[0]["recorded"]
    assert sum(u["sla_breaches"] for u in told) == 2 * count


def test_beat_records_a_breach_within_a_minute(celery_worker, make_live_tenant, engine, services, live_app):
    """A real beat process sends the sweep on its schedule: the breach is recorded soon after its instant."""
    import celeryconfig

    entry = celeryconfig.beat_schedule(live_app.config)["sla-record-breaches"]
    assert entry["schedule"] <= 15
    tenant = make_live_tenant()
    # Urgent: a reply within an hour; this one's hour ends in about 5 seconds.
    ticket = _ticket(
        tenant.agent, priority="urgent", created_at=(utcnow() - H + timedelta(seconds=5)).isoformat()
    )
    breach_at = datetime.fromisoformat(ticket["created_at"]) + H
    schedule = (
        "entry = dict(celeryconfig.beat_schedule(flask_app.config)['sla-record-breaches'])\n"
        f"entry['kwargs'] = {{'org_ids': [{tenant.org_id}]}}\n"
        # Beat's first send comes one interval after it starts: a short one here (the real one is
        # checked above), so the test waits seconds, not the interval.
        "entry['schedule'] = 2\n"
        "celery_app.conf.beat_schedule = {'sla-record-breaches': entry}\n"
    )
    with beat_process(services, f"beat-sla-{tenant.org_id}", schedule):
        deadline = time.monotonic() + 120
        recorded = []
        while time.monotonic() < deadline and not recorded:
            recorded = _rows(
                engine, "SELECT breach_at, recorded_at FROM sla_breaches WHERE ticket_id = :t", t=ticket["id"]
            )
            time.sleep(0.5)
    assert recorded, "beat recorded no breach"
    assert recorded[0].breach_at == breach_at
    assert recorded[0].recorded_at - breach_at < timedelta(seconds=60)


def test_next_reply_breaches_are_recorded_from_replies(celery_worker, make_live_tenant, engine, sweep):
    tenant = make_live_tenant()
    now = utcnow()
    targets = {"first_reply_hours": 8, "next_reply_hours": 1, "resolution_hours": 100}
    tenant.admin.put("/api/v1/sla-policy", json={"targets": dict.fromkeys(PRIORITIES, targets)})
    ticket = _ticket(tenant.agent, created_at=(now - 5 * H).isoformat())
    for author, at in (("agent", now - 4 * H), ("customer", now - 3 * H), ("customer", now - 2.5 * H)):
        response = tenant.agent.post(
            f"/api/v1/tickets/{ticket['id']}/replies", json={"author": author, "at": at.isoformat()}
        )
        assert response.status_code == 201
    assert sweep(tenant.org_id)["recorded"] == 1
    # The pair started at the first of the two customer replies.
    assert _breaches(engine, tenant.org_id) == {(ticket["id"], "next_reply"): now - 2 * H}
    assert sweep(tenant.org_id)["recorded"] == 0
