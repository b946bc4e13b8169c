"""Jobs that REST clients poll, list and cancel."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify

from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.spec import document, parse_query
from webapp.api.schemas.common import Job, JobList, JobListQuery
from webapp.core.vocabulary import ACTIVE_STATES, JOB_KINDS, JOB_STATES
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.jobs import lookup, transitions
from webapp.models import Job as JobRow
from webapp.security.admission import current_principal, require_role

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

RETRY_AFTER_SECONDS = "2"


def _choices(name: str, raw: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",")]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ApiError(
            400, f"unknown {name} {unknown[0]!r}; allowed: {', '.join(allowed)}", details={"field": name}
        )
    return values


def _encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "cursor is not valid; use next_cursor from the previous page") from exc


def job_response(job: JobRow, status: int = 200) -> tuple[Response, int, dict[str, str]]:
    """A job as JSON, with Retry-After while it is not finished."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if job.state in ACTIVE_STATES else {}
    return jsonify(job.to_dict()), status, headers


@bp.get("/<job_id>")
@document(
    "One job: state, progress, result or error (Retry-After while it is queued or running)",
    tag="jobs",
    responses={200: Job},
    headers={200: ("Retry-After",)},
)
@require_role("viewer")
def get(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """One job of the caller's organization."""
    job = lookup.get_job(get_session(), current_principal().org_id, job_id)
    if job is None:
        raise not_found("job")
    return job_response(job)


@bp.get("")
@document(
    "Jobs, newest first, filtered by state and kind", tag="jobs", query=JobListQuery, responses={200: JobList}
)
@require_role("viewer")
def list_() -> Response:
    """A page of the organization's jobs."""
    query = parse_query(JobListQuery)
    rows = lookup.list_jobs(
        get_session(),
        current_principal().org_id,
        state=_choices("state", query.state, JOB_STATES),
        kind=_choices("kind", query.kind, JOB_KINDS),
        limit=query.limit + 1,
        before=_decode_cursor(query.cursor) if query.cursor else None,
    )
    page = rows[: query.limit]
    next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > query.limit else None
    return jsonify({"items": [job.to_dict() for job in page], "next_cursor": next_cursor})


@bp.delete("/<job_id>")
@document(
    "Cancel a job (its creator or an admin): a queued one at once, a running one at its next progress "
    "checkpoint",
    tag="jobs",
    responses={200: Job},
    errors=(400, 401, 403, 404, 409),
)
@require_role("viewer")
def cancel(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """Cancel a job that is not final yet (409 once it is); only its creator or an admin may."""
    session = get_session()
    principal = current_principal()
    job = lookup.get_job(session, principal.org_id, job_id)
    if job is None:
        raise not_found("job")
    if principal.role != "admin" and job.created_by != principal.user_id:
        raise ApiError(403, "only the job's creator or an admin may cancel it")
    try:
        transitions.cancel(session, get_redis(), current_app.extensions["celery"], job)
    except transitions.JobNotCancellable as exc:
        raise ApiError(409, str(exc)) from exc
    return job_response(job)
