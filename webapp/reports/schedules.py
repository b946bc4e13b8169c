"""Report schedules of an organization: a cron expression in an IANA zone, an export, a webhook."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased

from webapp.core.timeutil import TimeError, zone
from webapp.models import ReportRun, ReportSchedule, Schedule, Webhook, WebhookDelivery
from webapp.models.base import MAX_ID
from webapp.reports.cron import CronError, check, next_run
from webapp.webhooks.records import hold_users

MAX_SCHEDULES = 50


class ReportError(ValueError):
    """A schedule the platform refuses; `status` is the HTTP status that fits it (404: no such webhook)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def _iso(value: datetime | None, tz_name: str) -> str | None:
    return value.astimezone(zone(tz_name)).isoformat() if value is not None else None


def as_dict(
    schedule: ReportSchedule, last_run: ReportRun | None = None, delivery: WebhookDelivery | None = None
) -> dict[str, Any]:
    """The schedule as the API answers it (times in its own zone), with its latest run if given and
    that run's report.ready delivery if it made one (its state is the run's: see run_answer)."""
    tz = schedule.timezone
    return {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": tz,
        "export": schedule.export,
        "webhook_id": schedule.webhook_id,
        "skip_if_empty": schedule.skip_if_empty,
        "enabled": schedule.enabled,
        "next_run_at": _iso(schedule.next_run_at, tz),
        "last_run_at": _iso(schedule.last_run_at, tz),
        "last_run": None
        if last_run is None
        else {
            "job_id": str(last_run.job_id),
            "trigger": last_run.trigger,
            **run_answer(last_run, delivery),
            "range_start": _iso(last_run.range_start, tz),
            "range_end": _iso(last_run.range_end, tz),
            "delivery_id": str(last_run.delivery_id) if last_run.delivery_id else None,
            "created_at": _iso(last_run.created_at, tz),
        },
        "created_at": _iso(schedule.created_at, tz),
        "updated_at": _iso(schedule.updated_at, tz),
    }


def checked_timing(cron: str, timezone: str, *, check_cron: bool = True) -> tuple[str, str]:
    """The cron expression (single-spaced) and the zone's canonical name; ReportError names the bad one.
    Without `check_cron` the expression is a stored one, kept as it is (one saved before the rules
    tightened still runs, and a change of anything else must not be refused for it)."""
    try:
        tz_name = zone(timezone).key
    except TimeError as exc:
        raise ReportError(str(exc), field="timezone") from exc
    if not check_cron:
        return cron, tz_name
    try:
        return check(cron), tz_name
    except CronError as exc:
        raise ReportError(str(exc), field="cron") from exc


def _own_webhook(session: Session, org_id: int, webhook_id: int) -> int:
    """The organization's webhook `webhook_id`, under the webhook users' lock until this transaction
    ends (a deletion waits for the schedule being saved and then finds it; 404 when it went first)."""
    hold_users(session, org_id)
    found = session.scalar(select(Webhook.id).where(Webhook.id == webhook_id, Webhook.org_id == org_id))
    if found is None:
        raise ReportError(f"webhook {webhook_id} not found", field="webhook_id", status=404)
    return found


def _hold_business_hours(session: Session, org_id: int, export_params: Mapping[str, Any]) -> None:
    """Keep the business-hours schedule the export counts on (when it names one) until this transaction
    commits: a deletion of it waits, then finds this report and refuses (clocks.delete_schedule). 404
    when it was deleted since it was looked up."""
    schedule_id = export_params.get("query", {}).get("schedule_id")
    if schedule_id is None:
        return
    held = session.scalar(
        select(Schedule.id)
        .where(Schedule.id == schedule_id, Schedule.org_id == org_id)
        .with_for_update(key_share=True)
    )
    if held is None:
        raise ReportError(f"schedule {schedule_id} not found", field="export", status=404)


def create_schedule(
    session: Session,
    org_id: int,
    fields: Mapping[str, Any],
    *,
    export_params: dict[str, Any],
    created_by: int | None,
    now: datetime,
) -> ReportSchedule:
    """A new schedule (flushed) whose first run is the cron's next time after `now`.

    `export_params` are the export's job params as checked now (the API builds them from `export`);
    each run puts its own window in them.
    """
    # Counted under the organization's lock (the one saves pointing at a webhook take): creations sent
    # at once would each count the same rows and go past the cap.
    hold_users(session, org_id)
    count = session.scalar(select(func.count()).where(ReportSchedule.org_id == org_id)) or 0
    if count >= MAX_SCHEDULES:
        raise ReportError(f"an organization has at most {MAX_SCHEDULES} report schedules", status=409)
    cron, tz_name = checked_timing(fields["cron"], fields["timezone"])
    _hold_business_hours(session, org_id, export_params)
    schedule = ReportSchedule(
        org_id=org_id,
        name=fields["name"],
        cron=cron,
        timezone=tz_name,
        export=fields["export"],
        export_params=export_params,
        webhook_id=_own_webhook(session, org_id, fields["webhook_id"]),
        skip_if_empty=fields.get("skip_if_empty", False),
        enabled=fields.get("enabled", True),
        next_run_at=next_run(cron, zone(tz_name), now),
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    session.flush()
    return schedule


def update_schedule(
    session: Session,
    schedule: ReportSchedule,
    fields: Mapping[str, Any],
    *,
    export_params: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Change the schedule and recompute its next run from `now`."""
    cron, tz_name = checked_timing(
        fields.get("cron", schedule.cron),
        fields.get("timezone", schedule.timezone),
        check_cron="cron" in fields,
    )
    if "webhook_id" in fields:
        schedule.webhook_id = _own_webhook(session, schedule.org_id, fields["webhook_id"])
    for name in ("name", "skip_if_empty", "enabled"):
        if name in fields:
            setattr(schedule, name, fields[name])
    if schedule.webhook_id is None and not fields.get("enabled"):
        schedule.enabled = False  # a schedule whose webhook went runs nowhere
    if schedule.enabled and schedule.webhook_id is None:
        raise ReportError(
            "the schedule's webhook was deleted; give it a webhook_id to enable it",
            field="webhook_id",
            status=409,
        )
    if export_params is not None:
        _hold_business_hours(session, schedule.org_id, export_params)
        schedule.export = fields["export"]
        schedule.export_params = export_params
    schedule.cron, schedule.timezone = cron, tz_name
    schedule.next_run_at = next_run(cron, zone(tz_name), now)
    schedule.updated_at = now
    session.flush()


def get_schedule(
    session: Session, org_id: int, schedule_id: int, *, lock: bool = False
) -> ReportSchedule | None:
    """The schedule `schedule_id` of `org_id` (None for another organization's); `lock`: its row held
    until the transaction ends (a deletion: of two at once, the second finds it gone)."""
    if not 0 < schedule_id <= MAX_ID:
        return None
    query = select(ReportSchedule).where(ReportSchedule.id == schedule_id, ReportSchedule.org_id == org_id)
    return session.scalar(query.with_for_update() if lock else query)


def list_schedules(session: Session, org_id: int) -> list[ReportSchedule]:
    """The organization's schedules, oldest first."""
    query = select(ReportSchedule).where(ReportSchedule.org_id == org_id).order_by(ReportSchedule.id)
    return list(session.scalars(query))


def last_runs(
    session: Session, schedule_ids: list[int]
) -> dict[int, tuple[ReportRun, WebhookDelivery | None]]:
    """Each schedule's latest run with its delivery, in one statement (a list of schedules asks once)."""
    if not schedule_ids:
        return {}
    latest = (
        select(ReportRun)
        .where(ReportRun.schedule_id.in_(schedule_ids))
        .order_by(ReportRun.schedule_id, ReportRun.created_at.desc(), ReportRun.id.desc())
        .ext(distinct_on(ReportRun.schedule_id))
        .subquery()
    )
    run = aliased(ReportRun, latest)
    rows = session.execute(
        select(run, WebhookDelivery).outerjoin(WebhookDelivery, WebhookDelivery.id == run.delivery_id)
    )
    return {row[0].schedule_id: (row[0], row[1]) for row in rows}


def run_answer(run: ReportRun, delivery: WebhookDelivery | None) -> dict[str, Any]:
    """A run's state and error as answered: a run that handed report.ready to its webhook is
    "delivering" until the receiver takes it (2xx: "delivered"), and "failed" once every retry was
    refused. A delivery no longer kept (its webhook deleted) leaves the run as it was recorded."""
    state, error = run.state, run.error
    if state == "delivered" and delivery is not None:
        if delivery.state in ("pending", "sending"):
            state = "delivering"
        elif delivery.state == "failed":
            state = "failed"
            said = f"status {delivery.last_status}" if delivery.last_status else delivery.last_error
            if delivery.attempts:
                error = f"the webhook did not take report.ready after {delivery.attempts} attempts ({said})"
            else:
                error = f"report.ready was not delivered: {said}, before any attempt"
    return {"state": state, "delivery_state": delivery.state if delivery else None, "error": error}
