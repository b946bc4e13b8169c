"""Import jobs: a batch of tickets written all or nothing, exactly once however often it is delivered."""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task

from webapp.analytics import rollups
from webapp.models import Organization
from webapp.tickets import imports
from workers.runner import JobContext, JobFailed, run_job


def _import(ctx: JobContext) -> dict[str, Any]:
    org_id = ctx.job.org_id
    done = ctx.job.result
    if done and "imported" in done:
        # An earlier delivery committed the tickets and died before finishing the job.
        ctx.log("already imported by an earlier attempt; not importing again")
        imports.after_import(ctx.client, org_id, done["event_types"], done["fields"], job_id=str(ctx.job.id))
        return done
    org = ctx.session.get(Organization, org_id)
    if org is None:
        raise JobFailed("the organization no longer exists")
    rows = ctx.params.get("rows") or []
    started = time.perf_counter()
    try:
        report, event_types, fields = imports.import_rows(ctx.session, org, rows, on_progress=ctx.report)
    except imports.ImportRejected as exc:
        body = exc.report.to_dict()
        raise JobFailed(str(exc), details={"invalid": body["invalid"]}, result=body) from exc
    ctx.report(0.99)
    result = {**report.to_dict(), "event_types": event_types, "fields": sorted(fields)}
    # The result is committed with the tickets, so a redelivery can tell the batch is already written.
    ctx.job.result = result
    ctx.session.commit()
    written = time.perf_counter()
    _refresh_rollups(ctx)
    refreshed = time.perf_counter()
    imports.after_import(ctx.client, org_id, event_types, fields, job_id=str(ctx.job.id))
    ctx.log(
        "imported %s tickets with %s events and their rollups in %.3fs, other dirty hours refreshed in %.3fs",
        report.imported,
        report.events,
        written - started,
        refreshed - written,
    )
    return result


def _refresh_rollups(ctx: JobContext) -> None:
    """Rebuild the hours other writers marked dirty meanwhile (best effort: reads use raw events there).

    The import added its own rollups in its transaction and marked nothing. Without waiting: a
    refresh that holds the lock is rebuilding those hours already.
    """
    try:
        rollups.refresh(ctx.session, org_id=ctx.job.org_id, wait=False)
        ctx.session.commit()
    except Exception as exc:
        ctx.session.rollback()
        ctx.log("rollup refresh after import failed, beat will retry: %s", exc)


@shared_task(name="tickets.import", bind=True, acks_late=True)
def import_tickets(self: Task, job_id: str) -> None:
    """Create every ticket of the job's batch, or none of them with a per-row error report."""
    run_job(self, job_id, _import)
