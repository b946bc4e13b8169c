"""Snapshot jobs, and beat's task that asks for the snapshots of every period that has closed."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import redis
from celery import Task, shared_task
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.analytics import cache, snapshots
from webapp.analytics.periods import due_periods
from webapp.core.timeutil import TimeError, utcnow, zone
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.jobs import lifecycle as jobs
from webapp.models import AnalyticsSnapshot, Organization
from workers.runner import JobContext, JobFailed, run_job

log = logging.getLogger(__name__)

# Events stamped just before midnight may commit just after it; wait this long past a period's end.


def snapshot_params(snapshot_type: str, first_date: date) -> dict[str, str]:
    """A snapshot job's params, as `POST /analytics/snapshots` builds them, so both deduplicate."""
    return {"snapshot_type": snapshot_type, "snapshot_date": first_date.isoformat()}


def _compute(ctx: JobContext) -> dict[str, Any]:
    try:
        snapshot_type = ctx.params["snapshot_type"]
        day = date.fromisoformat(ctx.params["snapshot_date"])
        ctx.report(0.05)
        data = snapshots.compute_snapshot(
            ctx.session, org_id=ctx.job.org_id, snapshot_type=snapshot_type, snapshot_date=day
        )
    except (KeyError, ValueError, LookupError) as exc:
        raise JobFailed(f"the snapshot cannot be computed: {exc}") from exc
    # The last checkpoint before writing: a cancel after it is too late, and the row is complete.
    ctx.report(0.9)
    snapshots.upsert_snapshot(
        ctx.session, org_id=ctx.job.org_id, snapshot_type=snapshot_type, snapshot_date=day, data=data
    )
    ctx.session.commit()
    try:
        cache.bump(ctx.client, ctx.job.org_id, {"snapshots"})
    except redis.RedisError as exc:
        ctx.log("snapshot cache not invalidated: %s", exc)
    ctx.log("%s snapshot of %s stored", snapshot_type, data["snapshot_date"])
    return {
        "snapshot_type": snapshot_type,
        "snapshot_date": data["snapshot_date"],
        "start": data["start"],
        "end": data["end"],
        "ticket_count": data["ticket_count"],
    }


@shared_task(name="snapshots.compute", bind=True, acks_late=True)
def compute(self: Task, job_id: str) -> None:
    """Compute and upsert one period snapshot: a rerun replaces the row, never adds one."""
    run_job(self, job_id, _compute)


def _stored(session: Session, org_id: int, snapshot_type: str, first_date: date) -> bool:
    """Whether the snapshot of this period is already in analytics_snapshots."""
    row = session.scalar(
        select(AnalyticsSnapshot.id).where(
            AnalyticsSnapshot.org_id == org_id,
            AnalyticsSnapshot.snapshot_type == snapshot_type,
            AnalyticsSnapshot.snapshot_date == first_date,
        )
    )
    return row is not None


@shared_task(name="snapshots.schedule_due", acks_late=True)
def schedule_due(now: str | None = None, org_ids: list[int] | None = None) -> dict[str, Any]:
    """Ask for the latest closed day, week and month of each organization (or of `org_ids`) not yet stored.

    Beat runs this every few minutes; `now` (ISO 8601) fixes the clock for a replay.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    grace = timedelta(minutes=current_app.config["SNAPSHOT_GRACE_MINUTES"])
    client = get_redis()
    celery = current_app.extensions["celery"]
    submitted: list[str] = []
    present = pending = 0
    with session_scope() as session:
        query = select(Organization.id, Organization.timezone).order_by(Organization.id)
        if org_ids is not None:
            query = query.where(Organization.id.in_(org_ids))
        for org_id, tz_name in session.execute(query).all():
            try:
                periods = due_periods(zone(tz_name), moment, grace=grace)
            except TimeError as exc:
                log.error("org=%s has an unusable time zone, no snapshots scheduled: %s", org_id, exc)
                continue
            # Stored rows never go away, so most periods are settled by one query without any lock.
            missing = [p for p in periods if not _stored(session, org_id, p.snapshot_type, p.first_date)]
            present += len(periods) - len(missing)
            for period in missing:
                key = (period.snapshot_type, period.first_date)
                # Under submit's lock: an identical active job is reused (a run that fires twice, or a
                # manual request), else a stored row means done; a job finishing between the two
                # checks has already committed its row, so the period is never computed twice.
                job, created = jobs.submit_unless(
                    session,
                    client,
                    celery,
                    org_id=org_id,
                    user_id=None,
                    kind="snapshot",
                    params=snapshot_params(*key),
                    done=partial(_stored, session, org_id, *key),
                )
                if job is None:
                    present += 1
                elif not created:
                    pending += 1
                else:
                    submitted.append(str(job.id))
                    log.info("job=%s org=%s kind=snapshot scheduled %s %s", job.id, org_id, *key)
    return {
        "now": moment.isoformat(),
        "submitted": submitted,
        "already_queued": pending,
        "already_stored": present,
    }
