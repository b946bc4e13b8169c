"""Cache refresh: recompute the organization's most requested analytics queries."""

from typing import Any

from celery import Task, shared_task
from flask import current_app

from webapp.analytics import popular, readers
from workers.runner import JobContext, run_job


def _refresh(ctx: JobContext) -> dict[str, Any]:
    entries = [e for e in popular.top(ctx.client, ctx.job.org_id) if e.get("kind") == "read"]
    ttl = current_app.config["CACHE_TTL_SECONDS"]
    refreshed = 0
    for index, entry in enumerate(entries):
        if entry["params"].get("route") in readers.READERS:
            read = readers.from_params(entry["params"])
            readers.read(ctx.session, ctx.client, ctx.job.org_id, read, ttl=ttl, force=True)
            ctx.session.rollback()
            refreshed += 1
        ctx.report((index + 1) / max(len(entries), 1))
    ctx.log("refreshed %s of %s popular queries", refreshed, len(entries))
    return {"queries": len(entries), "refreshed": refreshed}


@shared_task(name="cache.refresh", bind=True, acks_late=True, ignore_result=True)
def refresh(self: Task, job_id: str) -> None:
    """Recompute popular queries of the job's organization."""
    run_job(self, job_id, _refresh)
