"""Import jobs: a batch of tickets written all or nothing, exactly once however often it is delivered."""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task

from webapp.models import Organization
from webapp.tickets import effects, imports
from workers.runner import JobContext, JobFailed, run_job


def _write(ctx: JobContext) -> dict[str, Any]:
    """Import the job's rows and commit them with the job's result; JobFailed names the bad rows."""
    org = ctx.session.get(Organization, ctx.job.org_id)
    if org is None:
        raise JobFailed("the organization no longer exists")
    started = time.perf_counter()
    try:
        report, event_types, fields = imports.import_rows(
            ctx.session, org, ctx.params.get("rows") or [], on_progress=ctx.report
        )
    except imports.ImportRejected as exc:
        body = exc.report.to_dict()
        raise JobFailed(str(exc), details={"invalid": body["invalid"]}, result=body) from exc
    ctx.report(0.99)
    result = {**report.to_dict(), "event_types": event_types, "fields": sorted(fields)}
    # The result is committed with the tickets, so a redelivery can tell the batch is already written.
    ctx.job.result = result
    ctx.session.commit()
    elapsed = time.perf_counter() - started
    ctx.log(
        "imported %s tickets with %s events and their rollups in %.3fs",
        report.imported,
        report.events,
        elapsed,
    )
    return result


def _import(ctx: JobContext) -> dict[str, Any]:
    done = ctx.job.result
    if done and "imported" in done:
        # An earlier delivery committed the tickets and died before finishing the job.
        ctx.log("already imported by an earlier attempt; not importing again")
    else:
        done = _write(ctx)
        # The import added its own rollups and marked nothing; this rebuilds what other writers marked.
        effects.refresh_rollups(ctx.session, ctx.job.org_id, max_hours=None)
    imports.after_import(
        ctx.client, ctx.job.org_id, done["event_types"], done["fields"], job_id=str(ctx.job.id)
    )
    return done


@shared_task(name="tickets.import", bind=True, acks_late=True, ignore_result=True)
def import_tickets(self: Task, job_id: str) -> None:
    """Create every ticket of the job's batch, or none of them with a per-row error report."""
    run_job(self, job_id, _import)
