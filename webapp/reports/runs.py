"""Runs of report schedules: each makes its export as an ordinary export job, and once that job has
finished delivers `report.ready` with the export's link to the schedule's webhook.

A due schedule is taken under its row lock (FOR UPDATE SKIP LOCKED), and its next run is set to the
cron's first time after now, in the same transaction as the run's export job and run row: runs missed
while no worker ran collapse into the one run made when a worker returns. Beat's pass also finishes
the runs whose export job has ended (in the transaction that makes the delivery), so a run is
delivered once whatever crashes in between.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.analytics.cost import TooCostly
from webapp.analytics.window import Window, canonical_window
from webapp.core.timeutil import zone
from webapp.core.vocabulary import FINAL_STATES
from webapp.exports import room
from webapp.exports.room import ExportLimits, NoRoom
from webapp.exports.spec import ExportSpec
from webapp.jobs import submission as jobs
from webapp.models import Job, ReportRun, ReportSchedule, Webhook
from webapp.reports import ranges
from webapp.reports.cron import next_run
from webapp.reports.schedules import ReportError
from webapp.webhooks import deliveries

log = logging.getLogger(__name__)

BATCH = 100


def window_of(schedule: ReportSchedule, now: datetime) -> Window:
    """The export's window for a run at `now`: its relative range resolved in the schedule's zone, or
    its start and end read as an export request reads them at that moment."""
    query = schedule.export.get("query") or {}
    template = schedule.export_params["query"]
    granularity = template.get("granularity")
    if query.get("range"):
        start, end = ranges.resolve(query["range"], zone(schedule.timezone), now)
        return Window(start.astimezone(UTC), end.astimezone(UTC), zone(template["tz"]), granularity)
    return canonical_window(
        query.get("start"),
        query.get("end"),
        tz=query.get("tz"),
        default_tz=schedule.timezone,
        now=now,
        granularity=granularity,
    )


def spec_of(schedule: ReportSchedule, now: datetime) -> ExportSpec:
    """The export a run at `now` makes: the saved export with the run's window; ValueError when the
    window cannot be made (too many buckets for this range, say)."""
    window = window_of(schedule, now)
    params = dict(schedule.export_params)
    params["query"] = {**params["query"], **window.params()}
    return ExportSpec.from_params(params)


def start_run(
    session: Session,
    client: redis.Redis,
    tasks: jobs.TaskQueue,
    schedule: ReportSchedule,
    *,
    trigger: str,
    now: datetime,
    limits: ExportLimits,
    user_id: int | None = None,
) -> Job:
    """The run's export job and run row, committed with whatever the session holds, then enqueued.

    Raises ReportError when the export cannot be made now, TooCostly when its answer would hold more
    cells than an export may (as any export request's), NoRoom when the organization's exports
    are at their quota or cap (as any export request is), BrokerUnavailable when the queue refused
    the job (which is then failed, and its run with it at the next pass).
    """
    if schedule.webhook_id is None:
        raise ReportError(
            "the schedule's webhook was deleted; give it a webhook_id to run it",
            field="webhook_id",
            status=409,
        )
    webhook = session.get(Webhook, schedule.webhook_id)
    if webhook is not None and not webhook.enabled:
        # Its report.ready could not be delivered: no export is made for nothing.
        raise ReportError(
            f"the schedule's webhook {webhook.id} is disabled; enable it (PATCH /webhooks/{webhook.id} "
            "{enabled: true}) or give the schedule another webhook_id",
            field="webhook_id",
            status=409,
        )
    try:
        spec = spec_of(schedule, now)
    except ValueError as exc:
        raise ReportError(f"the report's export cannot be made now: {exc}", field="export") from exc
    # The answer's cells as any export request's, with this run's range and groups: a schedule saved
    # under the limit can grow past it as its data does (TooCostly, 400 for a run asked now).
    spec.check_cells(session, schedule.org_id, limits.max_cells)
    room.refuse_if_full(session, schedule.org_id, limits, now)
    # Counted again under the organization's export lock, held until the job row commits.
    room.check_active(jobs.count_active(session, schedule.org_id, "export", lock=True), limits)

    def add_run(job: Job) -> None:
        # A run asked for now is a run too (last_run_at stayed null after manual runs).
        schedule.last_run_at = now
        session.add(
            ReportRun(
                schedule_id=schedule.id,
                org_id=schedule.org_id,
                job_id=job.id,
                trigger=trigger,
                state="running",
                range_start=spec.window.start,
                range_end=spec.window.end,
                created_at=now,
            )
        )

    job = _submit_export(session, client, tasks, schedule.org_id, user_id, spec.params(), add_run)
    log.info("job=%s org=%s kind=export report schedule=%s (%s)", job.id, job.org_id, schedule.id, trigger)
    return job


def _submit_export(
    session: Session,
    client: redis.Redis,
    tasks: jobs.TaskQueue,
    org_id: int,
    user_id: int | None,
    params: dict[str, Any],
    on_create: Callable[[Job], None],
) -> Job:
    """A new export job, `on_create(job)` run in its transaction (the run row: the job exists if and only
    if its run does), committed, then handed to the broker (which failing, the job is failed and
    BrokerUnavailable raised, as every submission does)."""
    job = Job(
        id=uuid.uuid4(),
        org_id=org_id,
        created_by=user_id,
        kind="export",
        params=params,
        params_hash=jobs.params_hash("export", params, user_id),
        state="queued",
        progress=0.0,
        attempts=0,
    )
    session.add(job)
    session.flush()
    on_create(job)
    session.commit()
    jobs.enqueue(session, client, tasks, job)
    return job


def due(session: Session, *, now: datetime, org_ids: Sequence[int] | None = None) -> list[int]:
    """Enabled schedules whose next run has come, by id."""
    query = select(ReportSchedule.id).where(
        ReportSchedule.enabled, ReportSchedule.webhook_id.is_not(None), ReportSchedule.next_run_at <= now
    )
    if org_ids is not None:
        query = query.where(ReportSchedule.org_id.in_(org_ids))
    return list(session.scalars(query.order_by(ReportSchedule.next_run_at)))


def run_due(
    session: Session,
    client: redis.Redis,
    tasks: jobs.TaskQueue,
    schedule_id: int,
    *,
    now: datetime,
    limits: ExportLimits,
) -> Job | None:
    """Run the schedule if it is due and no other pass holds it; its next run is the cron's next time
    after `now` (however many were missed). None when there was nothing to run or it failed."""
    schedule = session.scalar(
        select(ReportSchedule)
        .where(ReportSchedule.id == schedule_id, ReportSchedule.enabled, ReportSchedule.next_run_at <= now)
        .with_for_update(skip_locked=True)
    )
    if schedule is None:
        return None
    # last_run_at is set with the run's job (start_run); a run that fails before puts back what it had.
    ran_before = schedule.last_run_at
    schedule.next_run_at = next_run(schedule.cron, zone(schedule.timezone), now)
    try:
        return start_run(session, client, tasks, schedule, trigger="schedule", now=now, limits=limits)
    except NoRoom as exc:
        if exc.code == WAIT_FOR_ROOM:
            # Its organization's exports are at their cap for now: the run stays due and is tried
            # again at the next pass (missed times still collapse into one), not dropped until the
            # cron's next time.
            log.warning("report schedule=%s org=%s waits: %s", schedule.id, schedule.org_id, exc)
            session.rollback()
            return None
        return _not_run(session, schedule, ran_before, exc)
    except jobs.BrokerUnavailable as exc:
        # The job and its run were committed (and failed): the schedule did run, and last_run says how.
        log.error("report schedule=%s org=%s ran without its job: %s", schedule.id, schedule.org_id, exc)
        return None
    except (ReportError, TooCostly) as exc:
        return _not_run(session, schedule, ran_before, exc)


# The refusal a scheduled run waits out (the organization's active exports at their cap).
WAIT_FOR_ROOM = "too_many_active_exports"


def _not_run(session: Session, schedule: ReportSchedule, ran_before: datetime | None, exc: Exception) -> None:
    """A run that could not start: its next time stays where it was set (a failing export is not
    retried each pass), and last_run_at keeps the last run that did start."""
    log.error("report schedule=%s org=%s did not run: %s", schedule.id, schedule.org_id, exc)
    schedule.last_run_at = ran_before
    session.commit()
    return None


def _ready_data(
    schedule: ReportSchedule, run: ReportRun, result: dict[str, Any], base_url: str
) -> dict[str, Any]:
    tz = zone(schedule.timezone)
    link = result.get("download_url")
    if link and link.startswith("/"):  # made with no base to make it absolute with: the receiver needs one
        link = base_url.rstrip("/") + link
    return {
        "schedule_id": schedule.id,
        "name": schedule.name,
        "export_id": result.get("export_id"),
        "download_url": link,
        "expires_at": result.get("expires_at"),
        "rows": result.get("rows"),
        "format": result.get("format"),
        "job_id": str(run.job_id),
        "range_start": run.range_start.astimezone(tz).isoformat(),
        "range_end": run.range_end.astimezone(tz).isoformat(),
    }


def waiting_run_org(session: Session, job_id: str) -> int | None:
    """The organization of the report run that waits for export job `job_id` to be delivered (None
    when the job is no report's, or its run is settled)."""
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        return None
    return session.scalar(
        select(ReportRun.org_id).where(ReportRun.job_id == key, ReportRun.state == "running")
    )


def deliver_soon(session: Session, tasks: jobs.TaskQueue, job_id: str) -> None:
    """Ask for a report pass of the organization whose report run waits for export job `job_id`
    (nothing for another job), so that the run is delivered as its export ends rather than at beat's
    next pass. Never raises: beat's pass delivers the run anyway."""
    try:
        org_id = waiting_run_org(session, job_id)
        if org_id is not None:
            tasks.send_task("reports.tick", kwargs={"org_ids": [org_id]}, expires=60)
    except Exception as exc:
        log.warning("could not ask for job %s's report run to be delivered: %s", job_id, exc)


def finish_runs(
    session: Session, *, now: datetime, org_ids: Sequence[int] | None = None, base_url: str = ""
) -> list[uuid.UUID]:
    """Deliver report.ready for each run whose export succeeded (or mark it skipped or failed); the
    deliveries made, to send once the caller commits. A relative download link is made absolute on
    `base_url` (the webhook's receiver cannot resolve it against anything)."""
    query = (
        select(ReportRun, Job)
        .join(Job, Job.id == ReportRun.job_id)
        .where(ReportRun.state == "running", Job.state.in_(FINAL_STATES))
        .order_by(ReportRun.id)
        .limit(BATCH)
        .with_for_update(of=ReportRun, skip_locked=True)
    )
    if org_ids is not None:
        query = query.where(ReportRun.org_id.in_(org_ids))
    made: list[uuid.UUID] = []
    for run, job in session.execute(query).all():
        run.finished_at = now
        schedule = session.get(ReportSchedule, run.schedule_id)
        result = job.result or {}
        if job.state != "succeeded" or schedule is None:
            run.state = "failed"
            run.error = str((job.error or {}).get("message", f"the export job was {job.state}"))[:500]
            continue
        if schedule.skip_if_empty and not result.get("rows"):
            run.state = "skipped"
            continue
        webhook = session.get(Webhook, schedule.webhook_id) if schedule.webhook_id is not None else None
        delivery_id = None
        if webhook is not None:
            data = _ready_data(schedule, run, result, base_url)
            delivery_id = deliveries.create(
                session, webhook, "report.ready", data, now=now, source_key=f"report_run:{run.id}"
            )
        if delivery_id is None:
            run.state = "failed"
            run.error = "the webhook is disabled" if webhook is not None else "the webhook was deleted"
            continue
        run.state = "delivered"
        run.delivery_id = delivery_id
        made.append(delivery_id)
    session.flush()
    return made
