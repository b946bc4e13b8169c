"""The delivery log lists every attempt a receiver may have had: an attempt is logged as it is claimed,
so one whose worker stopped before recording the answer stays in the log (found from outside: a
worker killed mid-attempt left the receiver's first POST out of the log, which began at attempt 2)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from webapp.core.timeutil import utcnow
from webapp.models import Webhook
from webapp.webhooks import deliveries, transport

SETTINGS = deliveries.Settings(False, (1.0,), 10, 3.0)


def _hook(make_tenant, db_session, name):
    tenant = make_tenant(name)
    hook = Webhook(
        org_id=tenant.org_id,
        url="https://hooks.example.com/in",
        secret="whsec_x",
        enabled=True,
        consecutive_failures=0,
    )
    db_session.add(hook)
    db_session.flush()
    now = utcnow()
    delivery_id = deliveries.create(db_session, hook, "webhook.test", {"hello": 1}, now=now)
    db_session.commit()
    assert delivery_id is not None
    return hook, delivery_id, now


def test_an_attempt_whose_worker_stopped_stays_in_the_log(make_tenant, db_session):
    hook, delivery_id, now = _hook(make_tenant, db_session, "Lost attempt")

    first = deliveries.claim(db_session, delivery_id, now=now)
    assert first is not None
    assert first.number == 1
    (sending,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert sending["state"] == "sending"
    assert [(a["number"], a["status_code"], a["error"]) for a in sending["attempts"]] == [
        (1, None, deliveries.NO_OUTCOME)
    ]

    # Its worker stops before recording an answer; once the lease runs out another claims it.
    later = now + deliveries.LEASE + timedelta(seconds=1)
    second = deliveries.claim(db_session, delivery_id, now=later)
    assert second is not None
    assert second.number == 2
    answer = transport.Answer(200, None, "203.0.113.7", 120)
    deliveries.record(db_session, second, answer, SETTINGS, now=later + timedelta(milliseconds=120))

    (done,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert done["state"] == "succeeded"
    attempts = [(a["number"], a["status_code"], a["address"], a["error"]) for a in done["attempts"]]
    assert attempts == [(1, None, None, deliveries.NO_OUTCOME), (2, 200, "203.0.113.7", None)]
    assert done["attempts"][1]["duration_ms"] == 120
    assert done["attempts"][1]["at"] == later.isoformat()


def test_a_stalled_attempt_does_not_overwrite_the_newer_attempts_delivery(make_tenant, db_session):
    """A worker that stalls past its lease records its answer late: the attempt is logged, but the
    delivery stays as the newer attempt's claim and outcome leave it."""
    hook, delivery_id, now = _hook(make_tenant, db_session, "Stalled attempt")
    first = deliveries.claim(db_session, delivery_id, now=now)
    later = now + deliveries.LEASE + timedelta(seconds=1)
    second = deliveries.claim(db_session, delivery_id, now=later)
    assert (first.number, second.number) == (1, 2)
    # The stalled first attempt fails late: no retry is scheduled over the newer claim, nothing counted.
    late = later + timedelta(seconds=2)
    outcome = deliveries.record(
        db_session, first, transport.Answer(500, None, "203.0.113.7", 70_000), SETTINGS, now=late
    )
    assert outcome == deliveries.SUPERSEDED  # so its worker schedules no retry
    (sending,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert sending["state"] == "sending"
    assert [(a["number"], a["status_code"]) for a in sending["attempts"]] == [(1, 500), (2, None)]
    db_session.refresh(hook)
    assert hook.consecutive_failures == 0
    # The newer attempt's answer decides.
    deliveries.record(db_session, second, transport.Answer(200, None, "203.0.113.7", 90), SETTINGS, now=late)
    (done,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert done["state"] == "succeeded"
    assert [(a["number"], a["status_code"]) for a in done["attempts"]] == [(1, 500), (2, 200)]
    # A stalled success recorded after the delivery finished changes nothing but its own row.
    late_success = transport.Answer(200, None, "203.0.113.7", 10)
    assert deliveries.record(db_session, first, late_success, SETTINGS, now=late) == deliveries.SUPERSEDED
    (still,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert (still["state"], still["attempts"][1]["status_code"]) == ("succeeded", 200)


def test_a_delivery_whose_webhook_was_disabled_meanwhile_counts_only_the_attempts_made(
    make_tenant, db_session
):
    """A report run's error said "after 2 attempts" where the delivery log listed one: the claim that
    found the webhook disabled counted an attempt it never made."""
    hook, delivery_id, now = _hook(make_tenant, db_session, "Disabled meanwhile")
    first = deliveries.claim(db_session, delivery_id, now=now)
    assert first is not None
    answer = transport.Answer(500, None, "203.0.113.7", 40)
    outcome = deliveries.record(db_session, first, answer, SETTINGS, now=now)
    assert outcome.state == "pending"
    hook.enabled = False
    db_session.commit()

    assert deliveries.claim(db_session, delivery_id, now=now + timedelta(seconds=5)) is None
    (failed,) = deliveries.log_of(db_session, hook.id, limit=10)
    assert failed["state"] == "failed"
    assert len(failed["attempts"]) == 1
    db_session.expire_all()
    stored = db_session.execute(
        text("SELECT attempts, last_error FROM webhook_deliveries WHERE id = :id"), {"id": delivery_id}
    ).one()
    assert (stored.attempts, stored.last_error) == (1, "the webhook is disabled")
