"""Cache refresh: recompute the organization's most requested analytics queries."""

from typing import Any

from celery import Task, shared_task

from webapp.analytics import popular
from workers.runner import JobContext, run_job


def _refresh(ctx: JobContext) -> dict[str, Any]:
    entries = popular.top(ctx.client, ctx.job.org_id)
    refreshed = 0
    for index, entry in enumerate(entries):
        if popular.recompute(ctx.session, ctx.client, ctx.job.org_id, entry):
            refreshed += 1
        ctx.report((index + 1) / max(len(entries), 1))
    ctx.log("refreshed %s of %s popular queries", refreshed, len(entries))
    return {"queries": len(entries), "refreshed": refreshed}


@shared_task(name="cache.refresh", bind=True, acks_late=True)
def refresh(self: Task, job_id: str) -> None:
    """Recompute popular queries of the job's organization."""
    run_job(self, job_id, _refresh)
