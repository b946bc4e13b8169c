"""Reading jobs: one of an organization's jobs by id, and its jobs newest first."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.models import Job


def get_job(session: Session, org_id: int, job_id: str) -> Job | None:
    """The job `job_id` of `org_id`, or None (also for ids that are not UUIDs)."""
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        return None
    return session.scalar(select(Job).where(Job.id == key, Job.org_id == org_id))


def list_jobs(
    session: Session,
    org_id: int,
    *,
    state: list[str] | None,
    kind: list[str] | None,
    limit: int,
    before: tuple[Any, uuid.UUID] | None,
) -> list[Job]:
    """Newest first, filtered by state and kind, after a (created_at, id) cursor."""
    query = select(Job).where(Job.org_id == org_id)
    if state:
        query = query.where(Job.state.in_(state))
    if kind:
        query = query.where(Job.kind.in_(kind))
    if before is not None:
        created_at, job_id = before
        query = query.where(
            (Job.created_at < created_at) | ((Job.created_at == created_at) & (Job.id < job_id))
        )
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))
