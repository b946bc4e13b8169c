"""A webhook deleted while a report schedule or an alert rule is being saved with it: whichever
commits first, the other sees it (found from outside: a schedule's PATCH answered 500 in 6 of 10
tries, and rules kept a channel to a deleted webhook). Two sessions of the live database, the save
and the deletion each left open while the other starts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import delete
from sqlalchemy.orm import Session

from webapp.alerts import rules
from webapp.models import AlertRule, Organization, ReportSchedule
from webapp.reports import schedules
from webapp.reports.schedules import ReportError
from webapp.webhooks import records

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def org(make_live_tenant, live_app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setitem(live_app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    tenant = make_live_tenant("Webhook races")
    yield tenant
    with live_app.extensions["db_sessionmaker"]() as session:
        session.execute(delete(Organization).where(Organization.id == tenant.org_id))
        session.commit()


def _hook(tenant: Any) -> int:
    response = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _schedule(tenant: Any, webhook_id: int) -> int:
    body = {
        "name": "daily",
        "cron": "0 7 * * *",
        "timezone": "UTC",
        "export": {"format": "csv", "dataset": "tickets", "query": {"range": "month_to_date"}},
        "webhook_id": webhook_id,
    }
    response = tenant.admin.post("/api/v1/report-schedules", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _delete_hook(live_app: Flask, org_id: int, webhook_id: int) -> Session:
    """The webhook deleted in a session left open (the caller commits and closes it)."""
    session = live_app.extensions["db_sessionmaker"]()
    webhook = records.get_webhook(session, org_id, webhook_id)
    assert webhook is not None
    records.delete_webhook(session, webhook)
    return session


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # the outcome the test looks at
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _waits_for(holding: Session, work: Callable[[], Any]) -> list[Any]:
    """Run `work` in another thread while `holding` (a transaction left open) holds the lock: it
    waits; `holding` is then committed and `work`'s outcome (its value or exception) returned."""
    thread, outcome = _in_thread(work)
    thread.join(0.5)
    assert thread.is_alive()  # it waits for the open transaction
    holding.commit()
    holding.close()
    thread.join(10)
    return outcome


def _deletion_waits_for(saving: Session, live_app: Flask, org_id: int, webhook_id: int) -> None:
    """Delete the webhook in another thread while `saving` (a save left open) holds it: the deletion
    waits for the save, which is then committed, and ends without error."""

    def remove() -> None:
        session = _delete_hook(live_app, org_id, webhook_id)
        session.commit()
        session.close()

    assert _waits_for(saving, remove) == [None]


def test_a_schedule_pointed_at_a_webhook_being_deleted_is_refused_with_404(live_app: Flask, org):
    kept, doomed = _hook(org), _hook(org)
    schedule_id = _schedule(org, kept)
    deleting = _delete_hook(live_app, org.org_id, doomed)

    def save() -> Any:
        with live_app.extensions["db_sessionmaker"]() as session:
            schedule = schedules.get_schedule(session, org.org_id, schedule_id)
            assert schedule is not None
            schedules.update_schedule(session, schedule, {"webhook_id": doomed}, export_params=None, now=NOW)
            session.commit()

    [refused] = _waits_for(deleting, save)  # the save waits for the deletion
    assert isinstance(refused, ReportError), refused
    assert refused.status == 404
    with live_app.extensions["db_sessionmaker"]() as session:
        stored = session.get(ReportSchedule, schedule_id)
        assert (stored.webhook_id, stored.enabled) == (kept, True)


def test_a_webhook_deleted_while_a_schedule_is_saved_with_it_disables_the_schedule(live_app: Flask, org):
    kept, doomed = _hook(org), _hook(org)
    schedule_id = _schedule(org, kept)
    saving = live_app.extensions["db_sessionmaker"]()
    schedule = schedules.get_schedule(saving, org.org_id, schedule_id)
    assert schedule is not None
    schedules.update_schedule(saving, schedule, {"webhook_id": doomed}, export_params=None, now=NOW)
    _deletion_waits_for(saving, live_app, org.org_id, doomed)
    with live_app.extensions["db_sessionmaker"]() as session:
        stored = session.get(ReportSchedule, schedule_id)
        assert (stored.webhook_id, stored.enabled) == (None, False)


def test_a_rule_saved_with_a_webhook_being_deleted_loses_that_channel(live_app: Flask, org):
    doomed = _hook(org)
    saving = live_app.extensions["db_sessionmaker"]()
    fields = {
        "name": "Surge",
        "metric": "ticket_count",
        "granularity": "hourly",
        "condition": {"type": "above", "value": 5},
        "channels": [{"type": "webhook", "webhook_id": doomed}, {"type": "websocket"}],
    }
    rule_id = rules.create_rule(saving, org.org_id, fields, tz=ZoneInfo("UTC"), created_by=None, now=NOW).id
    _deletion_waits_for(saving, live_app, org.org_id, doomed)
    with live_app.extensions["db_sessionmaker"]() as session:
        assert session.get(AlertRule, rule_id).channels == [{"type": "websocket"}]
