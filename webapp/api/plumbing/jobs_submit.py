"""Submitting a job from a view: the 202 answer, or 503 when the queue is down."""

from __future__ import annotations

from typing import Any

import redis
from flask import Response, current_app, jsonify, url_for

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.idempotency import answer_before_commit, forget_answer
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.jobs import submission as job_domain
from webapp.jobs import worker_time
from webapp.models import Job
from webapp.security.admission import current_principal, redis_answered

CAP_RETRY_AFTER = 10


def active_cap(kind: str) -> int:
    """Jobs of `kind` one organization may have queued or running at once."""
    if kind == "export":
        return current_app.config["EXPORT_MAX_ACTIVE_PER_ORG"]
    return current_app.config["JOB_MAX_ACTIVE_PER_ORG"][kind]


def _accepted(job: Job, *, created: bool) -> tuple[dict[str, Any], dict[str, str]]:
    status_url = url_for("api.jobs.get", job_id=str(job.id))
    body = {"job_id": str(job.id), "status_url": status_url, "state": job.state, "deduplicated": not created}
    return body, {"Location": status_url, "Retry-After": "1"}


def _within_worker_time(org_id: int) -> None:
    """429 while the organization's jobs ran JOB_WORKER_SECONDS_PER_MINUTE or more over the last
    minute (0: no such budget)."""
    budget = current_app.config["JOB_WORKER_SECONDS_PER_MINUTE"]
    if not budget:
        return
    try:
        spent = worker_time.spent(get_redis(), org_id, budget=budget)
    except redis.RedisError:
        return  # Redis is away: the submission answers 503 when it finds the queue down
    if spent.seconds < budget:
        return
    raise ApiError(
        429,
        f"the organization's jobs ran {spent.seconds:.1f} s of worker time over the last minute, "
        f"the limit of {budget:g} s; retry in {spent.retry_after} s",
        code="worker_time_budget",
        details={
            "spent_seconds": round(spent.seconds, 3),
            "limit_seconds": budget,
            "retry_after": spent.retry_after,
        },
        headers={"Retry-After": str(spent.retry_after)},
    )


def _too_many(refused: job_domain.TooManyActive) -> ApiError:
    kind, active, cap = refused.kind, refused.active, refused.cap
    return ApiError(
        429,
        str(refused),
        code="too_many_active_jobs",
        details={"kind": kind, "limit": cap, "active": active, "retry_after": CAP_RETRY_AFTER},
        headers={"Retry-After": str(CAP_RETRY_AFTER)},
    )


def refuse_if_full(kind: str) -> None:
    """429 at once while the organization has its cap of active `kind` jobs, or has spent its worker
    time: a cheap look (one count, no lock) before a costly body is parsed and checked (an import of
    10,000 rows was parsed and validated for 0.6 to 0.9 s before its 429). The submission counts again
    under its lock."""
    principal = current_principal()
    _within_worker_time(principal.org_id)
    cap = active_cap(kind)
    active = job_domain.count_active(get_session(), principal.org_id, kind)
    if active >= cap:
        raise _too_many(job_domain.TooManyActive(kind, active, cap))


def submit_job(
    kind: str, params: dict[str, Any], *, dedup: bool = True
) -> tuple[Response, int, dict[str, str]]:
    """Create (or, with `dedup`, reuse an identical active) job and answer 202 with where to poll it;
    a new job's answer is stored with it for the request's Idempotency-Key. Refused with 429 past the
    organization's worker-time budget (worker_time)."""
    principal = current_principal()
    _within_worker_time(principal.org_id)

    def remember(job: Job) -> None:
        answer_before_commit(202, *_accepted(job, created=True))

    try:
        job, created = job_domain.submit(
            get_session(),
            get_redis(),
            current_app.extensions["job_queue"],
            org_id=principal.org_id,
            user_id=principal.user_id,
            kind=kind,
            params=params,
            dedup=dedup,
            cap=active_cap(kind),
            on_create=remember,
            redis_answered=redis_answered(),
        )
    except job_domain.TooManyActive as exc:
        raise _too_many(exc) from exc
    except job_domain.BrokerUnavailable as exc:
        forget_answer()  # the job was failed: a retry with the key submits again
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    body, headers = _accepted(job, created=created)
    return jsonify(body), 202, headers
