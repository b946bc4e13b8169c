"""Aggregation jobs: an aggregations request answered in the background (async or heavy)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from flask import current_app

from webapp.analytics.aggregations import AggregationQuery, run_aggregation
from webapp.analytics.window import QueryError
from webapp.core.vocabulary import JOB_ROUTES
from workers.runner import JobContext, JobFailed, run_job


def _aggregate(ctx: JobContext) -> dict[str, Any]:
    ctx.report(0.05)
    try:
        query = AggregationQuery.from_params(ctx.params)
    except (QueryError, KeyError, ValueError) as exc:
        # The API validated the params; this catches rows stored by an older definition.
        raise JobFailed(f"the aggregation cannot be computed: {exc}") from exc
    max_cells = current_app.config["ANALYTICS_MAX_CELLS"]
    try:
        result = run_aggregation(ctx.session, org_id=ctx.job.org_id, query=query, max_cells=max_cells)
    except QueryError:
        raise  # its limits met while it ran: said as the REST answer says it (too_costly, say), by the runner
    except (KeyError, ValueError) as exc:
        raise JobFailed(f"the aggregation cannot be computed: {exc}") from exc
    # A last checkpoint, so a cancel that arrived during the query leaves no result behind.
    ctx.report(0.95)
    ctx.log("aggregated %s rows", len(result["rows"]))
    return result


@shared_task(name=JOB_ROUTES["aggregation"].name, bind=True, acks_late=True, ignore_result=True)
def aggregate(self: Task, job_id: str) -> None:
    """Run the job's aggregation and keep its answer as the job's result."""
    run_job(self, job_id, _aggregate)
