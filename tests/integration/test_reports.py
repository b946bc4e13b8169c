"""Scheduled reports end to end: an export job per run, report.ready delivered to a real receiver with a
link that downloads, skip_if_empty, missed runs collapsing into one, and the API's refusals."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.conftest import wait_for_job
from tests.integration.webhook_receiver import Receiver
from webapp.core.timeutil import utcnow

pytestmark = pytest.mark.worker


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def private_allowed(live_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(live_app.config, "WEBHOOK_ALLOW_PRIVATE", True)


def _hook(api: Any, receiver: Receiver) -> int:
    body = api.post("/api/v1/webhooks", json={"url": receiver.url}).get_json()
    receiver.secret = body["secret"]
    return body["id"]


def _schedule(api: Any, webhook_id: int, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "daily tickets",
        "cron": "0 7 * * *",
        "timezone": "Europe/Berlin",
        "export": {"format": "csv", "dataset": "tickets", "query": {"range": "month_to_date"}},
        "webhook_id": webhook_id,
        **fields,
    }
    response = api.post("/api/v1/report-schedules", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _tick(live_app: Any, org_id: int, now: datetime | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"org_ids": [org_id]}
    if now is not None:
        kwargs["now"] = now.isoformat()
    return live_app.extensions["celery"].send_task("reports.tick", kwargs=kwargs).get(timeout=60)


def _download(api: Any, url: str) -> Any:
    """The file at a report's link, fetched with no header at all: the link is the credential."""
    bare = api.client.get(url)
    assert bare.status_code == 200, bare.get_data(as_text=True)[:300]
    assert bare.headers["Cache-Control"] == "private, no-store"
    assert bare.headers["Referrer-Policy"] == "no-referrer"
    return bare


def test_a_report_run_is_delivered_with_a_link_that_downloads(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    tenant = make_live_tenant("Reports", "Europe/Berlin")
    for i in range(3):
        assert tenant.agent.post("/api/v1/tickets", json={"subject": f"report {i}"}).status_code == 201
    schedule = _schedule(tenant.admin, _hook(tenant.admin, receiver))

    assert schedule["last_run_at"] is None
    accepted = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run")
    assert accepted.status_code == 202, accepted.get_json()
    # A run asked for now is the schedule's last run (it stayed null after manual runs).
    ran = tenant.admin.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()
    assert ran["last_run_at"] is not None
    assert ran["last_run"]["trigger"] == "manual"
    job = wait_for_job(tenant.viewer, accepted.get_json()["job_id"])
    assert (job["kind"], job["state"]) == ("export", "succeeded")
    # The range was resolved in Berlin at the run: from the first of this month to the end of today.
    today = utcnow().astimezone(ZoneInfo("Europe/Berlin")).date()
    assert datetime.fromisoformat(job["params"]["query"]["start"]).astimezone(
        ZoneInfo("Europe/Berlin")
    ).date() == today.replace(day=1)
    _tick(live_app, tenant.org_id)

    (got,) = receiver.wait_for(1)
    assert got.signature_ok
    assert got.type == "report.ready"
    data = got.body["data"]
    assert data["schedule_id"] == schedule["id"]
    assert (data["rows"], data["format"]) == (3, "csv")
    assert data["export_id"] == job["result"]["export_id"]
    assert data["download_url"] == job["result"]["download_url"]
    assert datetime.fromisoformat(data["expires_at"]) > utcnow()
    downloaded = _download(tenant.viewer, data["download_url"])
    rows = list(csv.DictReader(io.StringIO(downloaded.get_data(as_text=True))))
    assert sorted(row["subject"] for row in rows) == ["report 0", "report 1", "report 2"]

    shown = _settled(tenant.viewer, schedule["id"])
    assert (shown["last_run"]["state"], shown["last_run"]["delivery_state"]) == ("delivered", "succeeded")
    assert shown["last_run"]["trigger"] == "manual"
    assert shown["last_run"]["delivery_id"] == got.id
    # The list answers each schedule's last run as the schedule's own answer does (one statement).
    other = _schedule(tenant.admin, _hook(tenant.admin, receiver))
    listed = {s["id"]: s for s in tenant.viewer.get("/api/v1/report-schedules").get_json()["items"]}
    assert listed[schedule["id"]]["last_run"] == shown["last_run"]
    assert listed[other["id"]]["last_run"] is None
    # A second pass delivers nothing more.
    assert _tick(live_app, tenant.org_id)["delivered"] == []


def test_a_run_is_delivered_as_its_export_ends_not_at_the_next_report_pass(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    """No beat runs here: the export job itself asks for its run to be finished (tester G saw the
    schedule's last_run say running for 10 to 20 s after its job had succeeded)."""
    tenant = make_live_tenant("Prompt")
    assert tenant.agent.post("/api/v1/tickets", json={"subject": "prompt"}).status_code == 201
    schedule = _schedule(tenant.admin, _hook(tenant.admin, receiver))
    job = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run").get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    (got,) = receiver.wait_for(1, timeout=10)
    assert got.type == "report.ready"
    assert _settled(tenant.viewer, schedule["id"])["last_run"]["state"] == "delivered"


def _settled(api: Any, schedule_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """The schedule once its last run's delivery is no longer on its way (the receiver's answer is
    recorded just after the receiver has the body)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = api.get(f"/api/v1/report-schedules/{schedule_id}").get_json()
        if shown["last_run"]["state"] != "delivering" or time.monotonic() > deadline:
            return shown
        time.sleep(0.1)


def test_a_run_is_delivering_until_its_receiver_takes_it_and_failed_when_it_never_does(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    """report.ready handed to a webhook is on its way until the receiver answers 2xx, and a run whose
    receiver refuses every retry ends failed, saying how (it was "delivered" once queued: outside
    tester)."""
    tenant = make_live_tenant("Refused")
    assert tenant.agent.post("/api/v1/tickets", json={"subject": "refused"}).status_code == 201
    schedule = _schedule(tenant.admin, _hook(tenant.admin, receiver))
    # A receiver that takes 2 s to answer (within the 3 s timeout): the delivery is being sent.
    receiver.script = [2.0]
    job = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run").get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    receiver.wait_for(1, timeout=10)
    run = tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()["last_run"]
    assert (run["state"], run["delivery_state"], run["error"]) == ("delivering", "sending", None)
    assert _settled(tenant.viewer, schedule["id"])["last_run"]["state"] == "delivered"
    # A receiver that answers 500 to the first attempt and both retries.
    receiver.script = [500, 500, 500]
    job = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run").get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    receiver.wait_for(4, timeout=20)
    run = _settled(tenant.viewer, schedule["id"], timeout=20)["last_run"]
    assert (run["state"], run["delivery_state"]) == ("failed", "failed"), run
    assert "status 500" in run["error"], run


def test_a_run_whose_webhook_is_deleted_before_its_receiver_took_it_is_failed(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    """The delivery goes with its webhook: the run is then answered failed, not as recorded."""
    tenant = make_live_tenant("Gone")
    assert tenant.agent.post("/api/v1/tickets", json={"subject": "gone"}).status_code == 201
    hook = _hook(tenant.admin, receiver)
    schedule = _schedule(tenant.admin, hook)
    receiver.script = [2.5]  # the attempt is on its way while the webhook is deleted
    job = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run").get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["state"] == "succeeded"
    receiver.wait_for(1, timeout=10)
    assert tenant.admin.delete(f"/api/v1/webhooks/{hook}").status_code == 204
    run = tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()["last_run"]
    assert (run["state"], run["delivery_state"]) == ("failed", None), run
    assert "deleted" in run["error"], run


def test_a_runs_answer_follows_its_delivery():
    """A run recorded as handed over is answered by its delivery: on its way, taken, or refused to the
    last retry (failed, saying how); without a delivery kept it stays as recorded."""
    from types import SimpleNamespace

    from webapp.reports.schedules import run_answer

    run = SimpleNamespace(state="delivered", error=None)

    def delivery(state: str, status: int | None = None, error: str | None = None) -> Any:
        return SimpleNamespace(state=state, last_status=status, last_error=error, attempts=6)

    assert run_answer(run, delivery("pending"))["state"] == "delivering"  # type: ignore[arg-type]
    assert run_answer(run, delivery("sending"))["state"] == "delivering"  # type: ignore[arg-type]
    assert run_answer(run, delivery("succeeded")) == {  # type: ignore[arg-type]
        "state": "delivered",
        "delivery_state": "succeeded",
        "error": None,
    }
    failed = run_answer(run, delivery("failed", status=500))  # type: ignore[arg-type]
    assert (failed["state"], failed["delivery_state"]) == ("failed", "failed")
    assert "6 attempts" in failed["error"]
    assert "status 500" in failed["error"]
    assert "connection refused" in run_answer(run, delivery("failed", error="connection refused"))["error"]  # type: ignore[arg-type]
    assert run_answer(run, None) == {"state": "delivered", "delivery_state": None, "error": None}  # type: ignore[arg-type]
    skipped = SimpleNamespace(state="skipped", error=None)
    assert run_answer(skipped, None)["state"] == "skipped"  # type: ignore[arg-type]


def test_a_run_with_no_rows_is_skipped_when_asked(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    tenant = make_live_tenant("Empty")
    schedule = _schedule(
        tenant.admin,
        _hook(tenant.admin, receiver),
        skip_if_empty=True,
        export={"format": "json", "dataset": "tickets", "query": {"range": "previous_month"}},
    )
    job = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run").get_json()
    assert wait_for_job(tenant.viewer, job["job_id"])["result"]["rows"] == 0
    assert _tick(live_app, tenant.org_id)["delivered"] == []
    assert (
        tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()["last_run"]["state"]
        == "skipped"
    )
    time.sleep(1)
    assert receiver.received == []


def test_missed_runs_collapse_into_one(celery_worker, make_live_tenant, receiver, private_allowed, live_app):
    tenant = make_live_tenant("Missed", "America/New_York")
    schedule = _schedule(
        tenant.admin, _hook(tenant.admin, receiver), cron="*/5 * * * *", timezone="America/New_York"
    )
    first = datetime.fromisoformat(schedule["next_run_at"])
    assert first > utcnow()
    assert first.minute % 5 == 0
    assert first - utcnow() <= timedelta(minutes=5)
    # Before its time nothing runs; three hours late (36 missed times), one run.
    assert _tick(live_app, tenant.org_id, first - timedelta(seconds=1))["started"] == []
    late = first + timedelta(hours=3, minutes=2)
    started = _tick(live_app, tenant.org_id, late)["started"]
    assert len(started) == 1
    assert _tick(live_app, tenant.org_id, late)["started"] == []
    shown = tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()
    assert datetime.fromisoformat(shown["next_run_at"]) == first + timedelta(hours=3, minutes=5)
    assert shown["last_run"]["trigger"] == "schedule"
    assert wait_for_job(tenant.viewer, started[0])["state"] == "succeeded"
    _tick(live_app, tenant.org_id, late)
    (got,) = receiver.wait_for(1)
    assert got.body["data"]["job_id"] == started[0]


def test_a_due_run_that_finds_the_export_cap_full_waits_for_the_next_pass(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app, db_engine
):
    """Tester H: a run due while its organization had EXPORT_MAX_ACTIVE_PER_ORG exports running was
    dropped until the cron's next time, and last_run_at said it had run."""
    import uuid

    from sqlalchemy.orm import Session

    from webapp.models import Job

    db_session = Session(db_engine)  # committed for the worker to see
    tenant = make_live_tenant("Full", "UTC")
    schedule = _schedule(tenant.admin, _hook(tenant.admin, receiver), cron="0 9 * * *", timezone="UTC")
    due = datetime.fromisoformat(schedule["next_run_at"])
    busy = [uuid.uuid4() for _ in range(live_app.config["EXPORT_MAX_ACTIVE_PER_ORG"])]
    now = utcnow()
    db_session.add_all(
        Job(
            id=key,
            org_id=tenant.org_id,
            kind="export",
            params={},
            params_hash=f"busy-{key}",
            state="running",
            created_at=now,
            updated_at=now,
        )
        for key in busy
    )
    db_session.commit()
    try:
        assert _tick(live_app, tenant.org_id, due + timedelta(seconds=5))["started"] == []
        shown = tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()
        assert datetime.fromisoformat(shown["next_run_at"]) == due  # still due
        assert shown["last_run_at"] is None
        assert shown["last_run"] is None
    finally:
        db_session.execute(text("UPDATE jobs SET state = 'cancelled' WHERE id = ANY(:ids)"), {"ids": busy})
        db_session.commit()
    # Room again: the next pass runs it, once.
    started = _tick(live_app, tenant.org_id, due + timedelta(seconds=20))["started"]
    assert len(started) == 1
    shown = tenant.viewer.get(f"/api/v1/report-schedules/{schedule['id']}").get_json()
    assert datetime.fromisoformat(shown["next_run_at"]) == due + timedelta(days=1)
    assert wait_for_job(tenant.viewer, started[0])["state"] == "succeeded"
    db_session.close()


def test_a_run_on_a_disabled_webhook_is_refused_before_any_export(
    celery_worker, make_live_tenant, receiver, private_allowed
):
    """Tester H: the run was accepted, its export made, and the run then failed for the webhook."""
    tenant = make_live_tenant("Disabled hook")
    hook = _hook(tenant.admin, receiver)
    schedule = _schedule(tenant.admin, hook)
    assert tenant.admin.patch(f"/api/v1/webhooks/{hook}", json={"enabled": False}).status_code == 200
    refused = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run")
    assert refused.status_code == 409, refused.get_json()
    assert "disabled" in refused.get_json()["error"]["message"]
    assert tenant.viewer.get("/api/v1/jobs?kind=export").get_json()["items"] == []


def test_a_schedule_saved_with_a_cron_now_refused_can_still_be_changed(
    make_tenant, app, monkeypatch, db_session
):
    """Cron extensions were accepted before the rules tightened: such a schedule keeps its expression,
    and a change of anything else is not refused for it; a new expression is checked."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    tenant = make_tenant("Old cron", "UTC")
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    created = _schedule(tenant.admin, hook)
    db_session.execute(
        text("UPDATE report_schedules SET cron = '0 9 L * *' WHERE id = :id"), {"id": created["id"]}
    )
    db_session.commit()
    url = f"/api/v1/report-schedules/{created['id']}"
    renamed = tenant.admin.patch(url, json={"name": "month end", "timezone": "Asia/Tokyo"})
    assert renamed.status_code == 200, renamed.get_json()
    assert (renamed.get_json()["cron"], renamed.get_json()["name"]) == ("0 9 L * *", "month end")
    refused = tenant.admin.patch(url, json={"cron": "0 9 * * mon#2"})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"]["field"] == "cron"


def test_schedules_through_the_api(make_tenant, app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    tenant, other = make_tenant("Sched", "UTC"), make_tenant("Other")
    mine = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    theirs = other.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    created = _schedule(tenant.admin, mine, cron="0 9 * * mon", timezone="Europe/Berlin")
    nine = datetime.fromisoformat(created["next_run_at"])
    assert (nine.weekday(), nine.hour, nine.minute) == (0, 9, 0)
    assert nine.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert timedelta(0) < nine - utcnow() <= timedelta(days=7)

    patched = tenant.admin.patch(
        f"/api/v1/report-schedules/{created['id']}", json={"cron": "30 6 * * *", "timezone": "Asia/Tokyo"}
    )
    assert patched.status_code == 200, patched.get_json()
    moved = datetime.fromisoformat(patched.get_json()["next_run_at"])
    assert (moved.hour, moved.minute, moved.utcoffset()) == (6, 30, timedelta(hours=9))
    assert timedelta(0) < moved - utcnow() <= timedelta(days=1)

    base = {
        "name": "x",
        "cron": "0 9 * * *",
        "timezone": "UTC",
        "webhook_id": mine,
        "export": {"format": "csv", "dataset": "tickets"},
    }
    bad = {
        "cron": {"cron": "0 9 * *"},
        "cron_range": {"cron": "0 25 * * *"},
        "timezone": {"timezone": "Mars/Olympus"},
        "range": {"export": {"format": "csv", "dataset": "tickets", "query": {"range": "last_decade"}}},
        "both": {
            "export": {
                "format": "csv",
                "dataset": "tickets",
                "query": {"range": "previous_day", "start": "2026-01-01"},
            }
        },
        "format": {"export": {"format": "pdf", "dataset": "tickets"}},
        "metric": {"export": {"format": "csv", "dataset": "time-series", "query": {"metric": "nope"}}},
        "buckets": {
            "export": {
                "format": "csv",
                "dataset": "time-series",
                "query": {"metric": "ticket_count", "granularity": "hourly", "start": "1990-01-01"},
            }
        },
        "extra": {"when": "soon"},
    }
    for name, fields in bad.items():
        response = tenant.admin.post("/api/v1/report-schedules", json={**base, **fields})
        assert response.status_code == 400, (name, response.get_json())
    for webhook_id in (theirs, 10**12):
        response = tenant.admin.post("/api/v1/report-schedules", json={**base, "webhook_id": webhook_id})
        assert response.status_code == 404, response.get_json()
        assert (
            tenant.admin.patch(
                f"/api/v1/report-schedules/{created['id']}", json={"webhook_id": webhook_id}
            ).status_code
            == 404
        )

    assert tenant.viewer.get("/api/v1/report-schedules").get_json()["items"][0]["id"] == created["id"]
    assert tenant.agent.post(f"/api/v1/report-schedules/{created['id']}/run").status_code == 403
    assert other.admin.get(f"/api/v1/report-schedules/{created['id']}").status_code == 404

    # A webhook in use is deleted all the same (204); its schedule stays, disabled, with no webhook.
    rule = tenant.admin.post(
        "/api/v1/alerts",
        json={
            "name": "hooked",
            "metric": "ticket_count",
            "granularity": "hourly",
            "condition": {"type": "above", "value": 5},
            "channels": [{"type": "webhook", "webhook_id": mine}, {"type": "websocket"}],
        },
    )
    assert rule.status_code == 201, rule.get_json()
    assert tenant.admin.delete(f"/api/v1/webhooks/{mine}").status_code == 204
    assert tenant.admin.get(f"/api/v1/webhooks/{mine}").status_code == 404
    kept = tenant.admin.get(f"/api/v1/report-schedules/{created['id']}").get_json()
    assert (kept["webhook_id"], kept["enabled"], kept["cron"]) == (None, False, "30 6 * * *")
    # The alert rule delivers over its other channels only.
    channels = tenant.admin.get(f"/api/v1/alerts/{rule.get_json()['id']}").get_json()["channels"]
    assert channels == [{"type": "websocket"}]
    # Neither run nor enabled again until it has a webhook.
    refused = tenant.admin.post(f"/api/v1/report-schedules/{created['id']}/run")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"]["field"] == "webhook_id"
    path = f"/api/v1/report-schedules/{created['id']}"
    assert tenant.admin.patch(path, json={"enabled": True}).status_code == 409
    assert tenant.admin.get(path).get_json()["enabled"] is False
    another = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    back = tenant.admin.patch(path, json={"enabled": True, "webhook_id": another})
    assert back.status_code == 200, back.get_json()
    assert (back.get_json()["webhook_id"], back.get_json()["enabled"]) == (another, True)
    assert tenant.admin.delete(f"/api/v1/report-schedules/{created['id']}").status_code == 204


def test_a_business_hours_report_counts_on_the_schedule(
    celery_worker, make_live_tenant, receiver, private_allowed, live_app
):
    """clock=business in a report's export is resolved as an export request's: the run's job reads on
    the organization's schedule, and its file holds the numbers the API answers on that clock."""
    tenant = make_live_tenant("Business report", "UTC")
    export = {
        "format": "json",
        "dataset": "time-series",
        "query": {
            "metric": "response_time",
            "granularity": "daily",
            "clock": "business",
            "range": "previous_month",
        },
    }
    # Without a schedule, refused as an export request is.
    refused = tenant.admin.post(
        "/api/v1/report-schedules",
        json={
            "name": "r",
            "cron": "0 7 * * *",
            "timezone": "UTC",
            "export": export,
            "webhook_id": _hook(tenant.admin, receiver),
        },
    )
    assert refused.status_code == 400, refused.get_json()
    office = [
        {"day": d, "start": "09:00", "end": "17:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]
    made = tenant.admin.post(
        "/api/v1/schedules", json={"name": "Office", "timezone": "UTC", "intervals": office}
    )
    assert made.status_code == 201, made.get_json()
    this_month = utcnow().replace(day=1, hour=8, minute=0, second=0, microsecond=0)
    day = (this_month - timedelta(days=1)).replace(day=1)  # the first of the previous month, 08:00
    for hours in (2, 5):
        created = tenant.agent.post(
            "/api/v1/tickets",
            json={
                "created_at": day.isoformat(),
                "first_response_at": (day + timedelta(hours=hours)).isoformat(),
            },
        )
        assert created.status_code == 201, created.get_json()
    schedule = _schedule(tenant.admin, _hook(tenant.admin, receiver), timezone="UTC", export=export)
    accepted = tenant.admin.post(f"/api/v1/report-schedules/{schedule['id']}/run")
    assert accepted.status_code == 202, accepted.get_json()
    job = wait_for_job(tenant.viewer, accepted.get_json()["job_id"])
    assert job["state"] == "succeeded", job
    assert (job["params"]["query"]["clock"], job["params"]["query"]["schedule_id"]) == (
        "business",
        made.get_json()["id"],
    )
    rows = json.loads(_download(tenant.viewer, job["result"]["download_url"]).get_data(as_text=True))
    rows = rows if isinstance(rows, list) else rows.get("rows", rows.get("points"))
    first = next(r for r in rows if (r.get("count") or 0) > 0)
    # Created at 08:00, answered at 10:00 and 13:00: 1 and 4 open hours (the office opens at 09:00).
    assert (first["count"], first["value"]) == (2, 2.5)
    # The report counts on that schedule, so the schedule stays until the report changes (409): its
    # runs would otherwise count on business hours that are gone.
    refused = tenant.admin.delete(f"/api/v1/schedules/{made.get_json()['id']}")
    assert refused.status_code == 409, refused.get_json()
    assert f"report schedule(s) {schedule['id']}" in refused.get_json()["error"]["message"]
    assert tenant.admin.delete(f"/api/v1/report-schedules/{schedule['id']}").status_code == 204
    assert tenant.admin.delete(f"/api/v1/schedules/{made.get_json()['id']}").status_code == 204
