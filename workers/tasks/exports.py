"""Export jobs: write the file with progress, record it, and answer with a signed download link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Task, shared_task
from flask import current_app

from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import JOB_ROUTES
from webapp.exports import files, records
from webapp.exports.spec import CONTENT_TYPES, ExportSpec
from webapp.infra.db import session_scope
from webapp.models.jobs import Export
from webapp.reports import runs
from webapp.security import signing
from workers.runner import JobContext, run_job


def result_of(export: Export) -> dict[str, Any]:
    """The job result: where to download the file, until when, and what it holds."""
    url, expires_at = signing.download_link(export, utcnow())
    return {
        "export_id": str(export.id),
        "download_url": url,
        "expires_at": expires_at.isoformat(),
        "rows": export.rows,
        "bytes": export.bytes,
        "sha256": export.sha256,
        "format": export.format,
        "filename": export.filename,
        "content_type": CONTENT_TYPES[export.format],
    }


def _directory() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


def _export(ctx: JobContext) -> dict[str, Any]:
    job = ctx.job
    # A redelivered job whose file was already written and recorded answers with that file.
    existing = records.find(ctx.session, job_id=job.id)
    if existing is not None:
        ctx.log("export %s already written; reusing it", existing.id)
        return result_of(existing)
    ctx.session.commit()  # the export reads its own REPEATABLE READ snapshot
    export = records.produce(
        ctx.session,
        job_id=job.id,
        org_id=job.org_id,
        spec=ExportSpec.from_params(ctx.params),
        directory=_directory(),
        retention_days=current_app.config["EXPORT_RETENTION_DAYS"],
        now=utcnow(),
        report=lambda rows, total: ctx.report(rows / total if total else 0.0),
    )
    ctx.log("wrote %s rows, %s bytes of %s to %s", export.rows, export.bytes, export.format, export.path)
    return result_of(export)


def _discard(ctx: JobContext) -> None:
    files.discard(_directory(), ctx.job.org_id, ctx.job.id, ctx.params["format"])


@shared_task(name=JOB_ROUTES["export"].name, bind=True, acks_late=True, ignore_result=True)
def run(self: Task, job_id: str) -> None:
    """Write the export of job `job_id` (CSV, JSON, NDJSON or XLSX) to its file; a report's export
    then has its run delivered at once rather than at beat's next report pass (up to its interval)."""
    run_job(self, job_id, _export, _discard)
    with session_scope() as session:
        runs.deliver_soon(session, current_app.extensions["celery"], job_id)
