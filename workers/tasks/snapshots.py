"""Snapshot jobs, and beat's task that asks for the snapshots of every period that has closed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import redis
from celery import Task, shared_task
from flask import current_app

from webapp.analytics import generations, snapshots
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import JOB_ROUTES
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.jobs import due_snapshots
from workers.runner import JobContext, JobFailed, run_job


def _compute(ctx: JobContext) -> dict[str, Any]:
    try:
        snapshot_type = ctx.params["snapshot_type"]
        day = date.fromisoformat(ctx.params["snapshot_date"])
        ctx.report(0.05)
        # Writes into the period that land from here on leave the row stale (and beat asks anew).
        token = snapshots.begin_compute(
            ctx.session, org_id=ctx.job.org_id, snapshot_type=snapshot_type, snapshot_date=day
        )
        data = snapshots.compute_snapshot(
            ctx.session, org_id=ctx.job.org_id, snapshot_type=snapshot_type, snapshot_date=day
        )
    except (KeyError, ValueError, LookupError) as exc:
        raise JobFailed(f"the snapshot cannot be computed: {exc}") from exc
    # The last checkpoint before writing: a cancel after it is too late, and the row is complete.
    ctx.report(0.9)
    stored = snapshots.upsert_snapshot(
        ctx.session,
        org_id=ctx.job.org_id,
        snapshot_type=snapshot_type,
        snapshot_date=day,
        data=data,
        token=token,
    )
    ctx.session.commit()
    if stored:
        try:
            generations.bump(ctx.client, ctx.job.org_id, {"snapshots"})
        except redis.RedisError as exc:
            ctx.log("snapshot cache not invalidated: %s", exc)
        ctx.log("%s snapshot of %s stored", snapshot_type, data["snapshot_date"])
    else:
        ctx.log("%s snapshot of %s not stored: a compute that began later took over", snapshot_type, day)
    return {
        "snapshot_type": snapshot_type,
        "snapshot_date": data["snapshot_date"],
        "start": data["start"],
        "end": data["end"],
        "ticket_count": data["ticket_count"],
    }


@shared_task(name=JOB_ROUTES["snapshot"].name, bind=True, acks_late=True, ignore_result=True)
def compute(self: Task, job_id: str) -> None:
    """Compute and upsert one period snapshot: a rerun replaces the row, never adds one."""
    run_job(self, job_id, _compute)


@shared_task(name="snapshots.schedule_due", acks_late=True)
def schedule_due(now: str | None = None, org_ids: list[int] | None = None) -> dict[str, Any]:
    """Ask for the latest closed day, week and month of each organization (or of `org_ids`) not yet stored.

    Beat runs this every few minutes; `now` (ISO 8601) fixes the clock for a replay. Events stamped
    just before midnight may commit just after it, so a period counts as closed SNAPSHOT_GRACE_MINUTES
    after its end.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    grace = timedelta(minutes=current_app.config["SNAPSHOT_GRACE_MINUTES"])
    celery = current_app.extensions["celery"]
    with session_scope() as session:
        scheduled = due_snapshots.schedule_due(
            session, get_redis(), celery, now=moment, grace=grace, org_ids=org_ids
        )
    return scheduled.as_dict()
