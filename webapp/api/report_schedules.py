"""Scheduled reports: an export on a cron schedule in an IANA zone, delivered to a webhook as
report.ready; admins write them and run them now, every role reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, url_for

from webapp.api.plumbing import costs
from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.export_room import room_errors
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.organization import requested_clock
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.spec import document, json_body, parse_model
from webapp.api.plumbing.writes import no_content, parse_patch
from webapp.api.schemas.common import JobAccepted
from webapp.api.schemas.reports import (
    ReportExport,
    ReportSchedule,
    ReportScheduleCreate,
    ReportScheduleList,
    ReportScheduleUpdate,
)
from webapp.core.timeutil import TimeError, utcnow, zone
from webapp.exports.room import ExportLimits
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.jobs import submission as job_domain
from webapp.models import ReportSchedule as ScheduleRow
from webapp.reports import ranges, runs, schedules
from webapp.reports.schedules import ReportError
from webapp.security.admission import current_principal, require_role

bp = Blueprint("report_schedules", __name__, url_prefix="/report-schedules")
WRITE_ERRORS = (400, 401, 403, 404, 409, 429)


@contextmanager
def report_errors() -> Iterator[None]:
    """A refused schedule as its JSON error, the transaction rolled back."""
    try:
        yield
    except ReportError as exc:
        get_session().rollback()
        raise ApiError(exc.status, str(exc), details={"field": exc.field} if exc.field else None) from exc


def _own(report_schedule_id: int, *, lock: bool = False) -> ScheduleRow:
    schedule = schedules.get_schedule(
        get_session(), current_principal().org_id, report_schedule_id, lock=lock
    )
    if schedule is None:
        raise not_found("report schedule")
    return schedule


def export_params(export: dict[str, Any], timezone: str, now: datetime, org_id: int) -> dict[str, Any]:
    """The export's job params as a run now would make them: checked as an export request is (400s
    name the field), its relative range resolved in `timezone`, its clock resolved as an export
    request's is (business hours: the schedule named, else the organization's default; 400 without
    one, 404 for another organization's)."""
    model = parse_model(ReportExport, export).root
    query = model.query
    if query.range is not None and (query.start is not None or query.end is not None):
        raise ApiError(400, "give export.query.range or start and end, not both", details={"field": "range"})
    try:
        tz_name = zone(timezone).key
    except TimeError as exc:
        raise ApiError(400, str(exc), details={"field": "timezone"}) from exc
    if query.range is not None:
        start, end = ranges.resolve(query.range, zone(tz_name), now)
        resolved = query.model_copy(
            update={"start": start.isoformat(), "end": end.isoformat(), "range": None}
        )
        model = model.model_copy(update={"query": resolved})
    with client_errors():
        spec = model.spec(default_tz=tz_name, now=now, clock=requested_clock(org_id, model.query))
        costs.check_export(spec, org_id, spend_exact=False)
        return spec.params()


def _answer(schedule: ScheduleRow) -> dict[str, Any]:
    return _answers([schedule])[0]


def _answers(items: list[ScheduleRow]) -> list[dict[str, Any]]:
    """The schedules as answered, each with its last run and that run's delivery (one statement)."""
    runs = schedules.last_runs(get_session(), [schedule.id for schedule in items])
    return [schedules.as_dict(schedule, *runs.get(schedule.id, (None, None))) for schedule in items]


@bp.get("")
@document("The organization's report schedules", tag="reports", responses={200: ReportScheduleList})
@require_role("viewer")
def list_() -> Response:
    """The organization's report schedules."""
    items = schedules.list_schedules(get_session(), current_principal().org_id)
    return jsonify({"items": _answers(items)})


@bp.post("")
@document(
    "Schedule a report: an export made on a cron schedule and delivered to a webhook as report.ready",
    tag="reports",
    body=ReportScheduleCreate,
    responses={201: ReportSchedule},
    headers={201: ("Location",)},
    errors=WRITE_ERRORS,
)
@require_role("admin")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a schedule (201 with its next run)."""
    body = parse_model(ReportScheduleCreate, json_body())
    principal, now = current_principal(), utcnow()
    fields = {**body.model_dump(), "export": json_body()["export"]}
    params = export_params(fields["export"], body.timezone, now, principal.org_id)
    with report_errors():
        schedule = schedules.create_schedule(
            get_session(),
            principal.org_id,
            fields,
            export_params=params,
            created_by=principal.user_id,
            now=now,
        )
    get_session().commit()
    location = url_for("api.report_schedules.get", report_schedule_id=schedule.id)
    return jsonify(_answer(schedule)), 201, {"Location": location}


@bp.get("/<int:report_schedule_id>")
@document("One report schedule, with its next and latest run", tag="reports", responses={200: ReportSchedule})
@require_role("viewer")
def get(report_schedule_id: int) -> Response:
    """One schedule with its latest run."""
    return jsonify(_answer(_own(report_schedule_id)))


@bp.patch("/<int:report_schedule_id>")
@document(
    "Change a report schedule; its next run is computed again",
    tag="reports",
    body=ReportScheduleUpdate,
    responses={200: ReportSchedule},
    errors=WRITE_ERRORS,
)
@require_role("admin")
def patch(report_schedule_id: int) -> Response:
    """Change the given fields; the next run is computed again."""
    fields = parse_patch(ReportScheduleUpdate)
    schedule, now = _own(report_schedule_id), utcnow()
    params = None
    if "export" in fields or "timezone" in fields:
        fields["export"] = json_body().get("export", schedule.export)
        params = export_params(
            fields["export"], fields.get("timezone", schedule.timezone), now, schedule.org_id
        )
    with report_errors():
        schedules.update_schedule(get_session(), schedule, fields, export_params=params, now=now)
    get_session().commit()
    return jsonify(_answer(schedule))


@bp.delete("/<int:report_schedule_id>")
@document("Delete a report schedule", tag="reports", responses={204: None}, errors=(401, 403, 404, 429))
@require_role("admin")
def delete(report_schedule_id: int) -> Response:
    """Delete a schedule and its runs."""
    get_session().delete(_own(report_schedule_id, lock=True))
    get_session().commit()
    return no_content()


@bp.post("/<int:report_schedule_id>/run")
@document(
    "Run the report now: its export job (202), delivered as report.ready once it succeeds",
    tag="reports",
    responses={202: JobAccepted},
    errors=(400, 401, 403, 404, 409, 429, 503),
)
@require_role("admin")
@idempotent
def run(report_schedule_id: int) -> tuple[Response, int, dict[str, str]]:
    """Run the schedule now: its export job (202)."""
    schedule, principal = _own(report_schedule_id), current_principal()
    celery = current_app.extensions["celery"]
    try:
        with report_errors(), room_errors(), client_errors():
            job = runs.start_run(
                get_session(),
                get_redis(),
                celery,
                schedule,
                trigger="manual",
                now=utcnow(),
                limits=ExportLimits.from_settings(current_app.config),
                user_id=principal.user_id,
            )
    except job_domain.BrokerUnavailable as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    status_url = url_for("api.jobs.get", job_id=str(job.id))
    body = {"job_id": str(job.id), "status_url": status_url, "state": job.state, "deduplicated": False}
    return jsonify(body), 202, {"Location": status_url, "Retry-After": "1"}
