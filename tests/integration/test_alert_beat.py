"""A real beat process sends the alert pass on its schedule: a closed bucket waiting for its rule is
evaluated within a pass or two."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

import celeryconfig
from tests.conftest import beat_process
from webapp.core.timeutil import utcnow

pytestmark = pytest.mark.worker


def test_beat_evaluates_a_closed_bucket_within_a_minute(celery_worker, make_live_tenant, live_app, services):
    entry = celeryconfig.beat_schedule(live_app.config)["alerts-evaluate-due"]
    assert entry["schedule"] <= 15
    tenant = make_live_tenant("Beat")
    rule = tenant.admin.post(
        "/api/v1/alerts",
        json={
            "name": "any ticket",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": {"type": "above", "value": 0},
            "channels": [{"type": "websocket"}],
        },
    ).get_json()
    last_hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ticket = tenant.agent.post(
        "/api/v1/tickets",
        json={"subject": "late", "created_at": (last_hour + timedelta(minutes=1)).isoformat()},
    )
    assert ticket.status_code == 201
    engine = live_app.extensions["db_engine"]
    with engine.begin() as conn:
        # As if the last pass had run just before that hour closed.
        conn.execute(
            text("UPDATE alert_rules SET evaluated_until = :at WHERE id = :id"),
            {"at": last_hour, "id": rule["id"]},
        )
    schedule = (
        "entry = dict(celeryconfig.beat_schedule(flask_app.config)['alerts-evaluate-due'])\n"
        f"entry['kwargs'] = {{'org_ids': [{tenant.org_id}]}}\n"
        # Beat's first send comes one interval after it starts: a short one here (the real one is
        # checked above), so the test waits seconds, not the interval.
        "entry['schedule'] = 2\n"
        "celery_app.conf.beat_schedule = {'alerts-evaluate-due': entry}\n"
    )
    started = time.monotonic()
    with beat_process(services, f"beat-alerts-{tenant.org_id}", schedule):
        recorded = None
        while time.monotonic() - started < 90 and recorded is None:
            with engine.connect() as conn:
                recorded = conn.execute(
                    text("SELECT state, bucket, value FROM alert_events WHERE rule_id = :id"),
                    {"id": rule["id"]},
                ).first()
            waited = time.monotonic() - started
            time.sleep(0.5)
    assert recorded is not None, "beat evaluated nothing"
    assert (recorded.state, recorded.bucket, recorded.value) == ("firing", last_hour, 1)
    # Beat sends the pass every 2 s here: well within the minute the real 15 s interval promises.
    assert waited < 60


def test_beat_says_it_runs_as_it_starts_not_an_interval_later(live_app, services):
    # Health is "degraded" while beat's heartbeat is missing. Beat writes it itself as it starts and
    # every 10 s after, from its scheduler's loop (no worker involved: with the workers down beat is
    # not called silent). Here its schedule is empty: beat sends no task at all, and its loop, which
    # would otherwise sleep for minutes, still wakes for the heartbeat.
    from webapp.infra import heartbeat

    store = live_app.extensions["redis"]
    started = utcnow()
    seen: list[str] = []
    with beat_process(services, "beat-first", "celery_app.conf.beat_schedule = {}\n"):
        while len(seen) < 2 and (utcnow() - started).total_seconds() < 35:
            last = heartbeat.beat_last_run(store)
            if last is not None and datetime.fromisoformat(last) >= started and last not in seen:
                seen.append(last)
            time.sleep(0.2)
    assert seen, "beat's first heartbeat did not come as it started"
    assert len(seen) == 2, "beat's loop wrote no heartbeat after its first"
    gap = (datetime.fromisoformat(seen[1]) - datetime.fromisoformat(seen[0])).total_seconds()
    assert 5 < gap < 15, gap
