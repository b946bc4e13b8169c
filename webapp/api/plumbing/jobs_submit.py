"""Submitting a job from a view: the 202 answer, or 503 when the queue is down."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, url_for

from webapp.api.plumbing.errors import ApiError
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.jobs import lifecycle as job_domain
from webapp.security.admission import current_principal, redis_answered


def submit_job(kind: str, params: dict[str, Any]) -> tuple[Response, int, dict[str, str]]:
    """Create (or reuse an identical active) job and answer 202 with where to poll it."""
    principal = current_principal()
    try:
        job, created = job_domain.submit(
            get_session(),
            get_redis(),
            current_app.extensions["celery"],
            org_id=principal.org_id,
            user_id=principal.user_id,
            kind=kind,
            params=params,
            redis_answered=redis_answered(),
        )
    except job_domain.BrokerUnavailable as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    status_url = url_for("api.jobs.get", job_id=str(job.id))
    body = {"job_id": str(job.id), "status_url": status_url, "state": job.state, "deduplicated": not created}
    return jsonify(body), 202, {"Location": status_url, "Retry-After": "1"}
