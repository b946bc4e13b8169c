"""Business-hours schedules of the organization: admins write them, every role reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Response, jsonify, url_for

from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.schemas.schedules import Schedule, ScheduleCreate, ScheduleList, ScheduleUpdate
from webapp.clocks import schedules as domain
from webapp.clocks.schedules import ClockError
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Schedule as ScheduleRow
from webapp.security.admission import current_principal, require_role
from webapp.tickets import effects

bp = Blueprint("schedules", __name__, url_prefix="/schedules")
WRITE_ERRORS = (400, 401, 403, 404, 409, 429)


@contextmanager
def clock_errors() -> Iterator[None]:
    """A refused schedule or policy change as its JSON error, the transaction rolled back."""
    try:
        yield
    except ClockError as exc:
        get_session().rollback()
        raise ApiError(exc.status, str(exc), details={"field": exc.field} if exc.field else None) from exc


def committed(org_id: int, sla_changed: bool, clock_changed: bool = True, **about: int) -> None:
    """Commit, then invalidate the answers that depend on the organization's clocks and tell live
    clients (none when no business time changed: a new name or default, whose answers name the
    schedule by id). `about` names what changed in the metric_update (schedule_id)."""
    get_session().commit()
    if not clock_changed:
        return
    families = {"schedules", "sla"} if sla_changed else {"schedules"}
    effects.clocks_changed(get_redis(), org_id, families, about, durations="schedule_id" in about)


def _own(schedule_id: int) -> ScheduleRow:
    schedule = domain.get_schedule(get_session(), current_principal().org_id, schedule_id)
    if schedule is None:
        raise not_found("schedule")
    return schedule


@bp.get("")
@document("The organization's business-hours schedules", tag="schedules", responses={200: ScheduleList})
@require_role("viewer")
def list_() -> Response:
    items = domain.list_schedules(get_session(), current_principal().org_id)
    return jsonify({"items": [s.to_dict() for s in items]})


@bp.post("")
@document(
    "Create a schedule (the first one is the default)",
    tag="schedules",
    body=ScheduleCreate,
    responses={201: Schedule},
    headers={201: ("Location",)},
    errors=WRITE_ERRORS,
)
@require_role("admin")
@idempotent
def create() -> tuple[Response, int, dict[str, str]]:
    fields = parse_body(ScheduleCreate).model_dump()
    org_id = current_principal().org_id
    with clock_errors():
        schedule = domain.create_schedule(get_session(), org_id, fields)
    body = schedule.to_dict()
    committed(org_id, sla_changed=False, schedule_id=body["id"])
    return jsonify(body), 201, {"Location": url_for("api.schedules.get", schedule_id=body["id"])}


@bp.get("/<int:schedule_id>")
@document("One schedule", tag="schedules", responses={200: Schedule})
@require_role("viewer")
def get(schedule_id: int) -> Response:
    return jsonify(_own(schedule_id).to_dict())


@bp.patch("/<int:schedule_id>")
@document(
    "Change a schedule; every business-hours answer follows from then on",
    tag="schedules",
    body=ScheduleUpdate,
    responses={200: Schedule},
    errors=WRITE_ERRORS,
)
@require_role("admin")
def patch(schedule_id: int) -> Response:
    fields = parse_body(ScheduleUpdate).model_dump(exclude_unset=True)
    if not fields:
        raise ApiError(400, "nothing to change: give at least one field")
    schedule = _own(schedule_id)
    with clock_errors():
        clock_changed = domain.update_schedule(get_session(), schedule.org_id, schedule, fields)
    body = schedule.to_dict()
    committed(
        schedule.org_id, sla_changed=clock_changed, clock_changed=clock_changed, schedule_id=schedule_id
    )
    return jsonify(body)


@bp.delete("/<int:schedule_id>")
@document(
    "Delete a schedule (not the default while others exist, nor the SLA policy's)",
    tag="schedules",
    responses={204: None},
    errors=(401, 403, 404, 409, 429),
)
@require_role("admin")
def delete(schedule_id: int) -> tuple[str, int]:
    schedule = _own(schedule_id)
    with clock_errors():
        domain.delete_schedule(get_session(), schedule.org_id, schedule)
    committed(schedule.org_id, sla_changed=False, schedule_id=schedule_id)
    return "", 204
