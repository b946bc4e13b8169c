"""Cache refresh: recompute the organization's most requested analytics queries."""

from typing import Any

from celery import Task, shared_task
from flask import current_app

from webapp.analytics import warming
from workers.runner import JobContext, run_job


def _refresh(ctx: JobContext) -> dict[str, Any]:
    warmed = warming.refresh_popular(
        ctx.session,
        ctx.client,
        ctx.job.org_id,
        ttl=current_app.config["CACHE_TTL_SECONDS"],
        max_cells=current_app.config["ANALYTICS_MAX_CELLS"],
        on_progress=ctx.report,
    )
    ctx.log(
        "refreshed %s of %s popular queries (%s refused, dropped)",
        warmed.refreshed,
        warmed.queries,
        warmed.dropped,
    )
    return {"queries": warmed.queries, "refreshed": warmed.refreshed, "dropped": warmed.dropped}


@shared_task(name="cache.refresh", bind=True, acks_late=True, ignore_result=True)
def refresh(self: Task, job_id: str) -> None:
    """Recompute popular queries of the job's organization."""
    run_job(self, job_id, _refresh)
