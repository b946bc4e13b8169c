"""The lifecycle every job task shares: load, start, work with progress, finish exactly once."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from webapp.analytics.cost import TooCostly
from webapp.analytics.window import QueryError
from webapp.core.vocabulary import FINAL_STATES, OVERFLOW_QUEUE
from webapp.infra import priority
from webapp.infra.db import session_factory
from webapp.infra.redis_client import get_redis
from webapp.jobs import claim, submission, worker_time
from webapp.jobs import transitions as jobs
from webapp.live import events
from webapp.models import Job
from workers import claiming

log = logging.getLogger("workers.jobs")

TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, redis.ConnectionError, redis.TimeoutError)


class JobFailed(Exception):
    """A failure the job reports as its error (not a bug, not transient).

    `details` are added to the error object; `result` (e.g. an import's per-row report) is kept too.
    """

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, result: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.details = details or {}
        self.result = result


class JobContext:
    """What a job's work function gets: the job, its own session, and a progress reporter.

    The work session (and its connection) is opened when the work first asks for it: a job that
    needs no database for its work makes no round trip for it. The job is attached to it then.
    """

    def __init__(
        self,
        job: Job,
        client: redis.Redis,
        open_session: Callable[[], Session],
        state_session: Session,
        state_job: Job,
        started: events.Sent | None = None,
    ) -> None:
        self.job = job
        self.client = client
        self._open_session = open_session
        self._session: Session | None = None
        self._state_session = state_session
        self._state_job = state_job
        self._started = started

    @property
    def session(self) -> Session:
        """The work session (opened on first use, with the job in it)."""
        if self._session is None:
            self._session = self._open_session()
            self._session.add(self.job)
        return self._session

    @property
    def params(self) -> dict[str, Any]:
        """The job's parameters (read by the work side only)."""
        return self.job.params

    def report(self, fraction: float) -> None:
        """Record progress; raises JobCancelled once a cancel was requested."""
        self.settle()
        jobs.progress(self._state_session, self.client, self._state_job, fraction)

    def settle(self) -> None:
        """Read the reply to the job's `running` event (sent as the work began, its round trip overlapping
        the work's first steps): every later event of the job is published after it."""
        if self._started is not None:
            started, self._started = self._started, None
            started.done()

    def log(self, message: str, *args: Any) -> None:
        """Log `message` with the job, organization and kind in front."""
        log.info("job=%s org=%s kind=%s " + message, self.job.id, self.job.org_id, self.job.kind, *args)

    def commit(self) -> None:
        """Commit what the work wrote (nothing to do when it never opened its session)."""
        if self._session is not None:
            self._session.commit()

    def rollback(self) -> None:
        """Roll back what the work left uncommitted."""
        if self._session is not None:
            self._session.rollback()


@dataclass
class _Delivery:
    """One delivery of a job's task: its state session, where its work session comes from, and its limits."""

    task: Task
    state_session: Session
    open_work_session: Callable[[], Session]
    client: redis.Redis
    max_attempts: int


def run_job(
    task: Task,
    job_id: str,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None = None,
) -> None:
    """Run `work` for the job, moving it through running to a final state; safe to redeliver.

    One delivery at a time: a second delivery of a job that another worker is running (the broker's
    redelivery after a visibility timeout, or beat's requeue racing the original message) is dropped.
    """
    if task.request.get(claiming.DEFERRED_HEADER):
        claiming.take_turn(task, job_id)
        return
    try:
        _deliver(task, job_id, work, cleanup)
    except claiming.StateLost as lost:
        # The connection holding the run lock went away mid-run: the job is running in its row but
        # held by nobody. Sent again shortly, a new delivery claims it (an attempt more, so this ends
        # at JOB_MAX_ATTEMPTS) as beat's lost-job sweep would, a minute later.
        log.warning("job=%s lost its run lock's connection (%s); sent again", job_id, lost.__cause__)
        task.app.send_task(
            task.name,
            countdown=claiming.STATE_LOST_RETRY_SECONDS,
            **submission.task_options(job_id, OVERFLOW_QUEUE),
        )


def _deliver(
    task: Task,
    job_id: str,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None,
) -> None:
    engine = current_app.extensions["db_engine"]
    make_session = session_factory()
    max_attempts = current_app.config["JOB_MAX_ATTEMPTS"]
    with (
        claiming.claimed(engine, job_id, max_attempts) as (taken, state_conn),
        contextlib.ExitStack() as stack,
    ):
        if taken.waits:
            claiming.wait_for_slot(task, job_id, taken)
            return
        if state_conn is None:
            log.warning("job=%s is being run by another delivery; dropping this one", job_id)
            return

        # The run's time on this slot counts against its organization's worker-time budget.
        if taken.org_id is not None:
            stack.callback(_charge, taken.org_id, time.monotonic(), time.time())
        # A job still running after JOB_DEMOTE_AFTER_SECONDS yields the CPUs to requests; so does
        # every job from its start while its organization's jobs keep a worker busy.
        demotion = stack.enter_context(
            priority.Demotion(
                worker_time.demotion_delay(
                    taken.org_id,
                    current_app.config["JOB_DEMOTE_AFTER_SECONDS"],
                    current_app.config["JOB_DEMOTE_BUSY_SECONDS"],
                ),
                current_app.config["JOB_NICENESS"],
            )
        )

        def open_work_session() -> Session:
            # The work session keeps one connection for the whole job: no pool checkout at every
            # commit. Its backend follows the job's priority (put back before the pool has it again).
            work_conn = stack.enter_context(engine.connect())
            # (invalidate: closed and dropped from the pool where the backend cannot be put back)
            stack.enter_context(demotion.backend(work_conn.connection.dbapi_connection, work_conn.invalidate))
            return stack.enter_context(make_session(bind=work_conn))

        # The state session's connection is the lock's, autocommit: every state change is a single
        # statement, committed as it runs.
        state_session = stack.enter_context(make_session(bind=state_conn))
        delivery = _Delivery(task, state_session, open_work_session, get_redis(), max_attempts)
        try:
            _held(delivery, job_id, taken, work, cleanup)
        except (sa_exc.DBAPIError, sa_exc.PendingRollbackError) as exc:
            if not claiming.connection_lost(exc):
                raise
            raise claiming.StateLost from exc


def _held(
    delivery: _Delivery,
    job_id: str,
    taken: claim.Claim,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None,
) -> None:
    """With the run lock held: run the job the claim started, or start it if it became startable."""
    if taken.started is not None:
        _run(delivery, taken.started, work, cleanup)
        return
    state_job = _ready(delivery, job_id)
    if state_job is not None:
        # Startable after all (it changed between the claim and this look): start it as before.
        session = delivery.state_session
        jobs.start(session, delivery.client, state_job)
        work_job = jobs.loaded_job({**_columns(state_job), "params": _params(session, state_job)})
        _work(delivery, state_job, work_job, work, cleanup)


def _charge(org_id: int, started: float, began: float) -> None:
    worker_time.charge(get_redis(), org_id, time.monotonic() - started, started=began)


def _columns(job: Job) -> dict[str, Any]:
    return {
        column.key: getattr(job, column.key) for column in Job.__table__.columns if column.key != "params"
    }


def _params(session: Session, job: Job) -> dict[str, Any]:
    return session.scalar(select(Job.params).where(Job.id == job.id)) or {}


def _tag(job: Job) -> str:
    return f"job={job.id} org={job.org_id} kind={job.kind}"


def _ready(delivery: _Delivery, job_id: str) -> Job | None:
    """With the run lock held, a job the claim did not start: None when this delivery has nothing to
    do (the job is unknown or final, was cancelled before it started, or lost its worker too often),
    otherwise the job (it became startable since)."""
    session, client = delivery.state_session, delivery.client
    # The state session never reads the parameters (an import's hold its rows: megabytes).
    job = session.get(Job, uuid.UUID(job_id), options=[defer(Job.params)])
    if job is None:
        log.warning("job=%s not found; dropping the task", job_id)
        return None
    if job.state in FINAL_STATES:
        log.info("%s already %s; nothing to do", _tag(job), job.state)
        return None
    if job.cancel_requested:
        jobs.finish(session, client, job, "cancelled")
        log.info("%s cancelled before it started", _tag(job))
        return None
    if job.attempts >= delivery.max_attempts:
        gave_up = f"gave up after {job.attempts} attempts (the worker was lost each time)"
        jobs.finish(session, client, job, "failed", error={"code": "worker_lost", "message": gave_up})
        log.error("%s failed: too many attempts", _tag(job))
        return None
    return job


def _run(
    delivery: _Delivery,
    started: Job,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None,
) -> None:
    """Publish the start the claim made, then run `work` and finish the job with what came of it."""
    # The state side's own copy of the job, without its parameters; the work side gets `started`.
    state_job = jobs.loaded_job(_columns(started))
    delivery.state_session.add(state_job)
    running = jobs.send_update(delivery.client, state_job)
    _work(delivery, state_job, started, work, cleanup, running)


def _work(
    delivery: _Delivery,
    state_job: Job,
    work_job: Job,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None,
    running: events.Sent | None = None,
) -> None:
    log.info("%s started attempt %s", _tag(state_job), state_job.attempts)
    ctx = JobContext(
        work_job, delivery.client, delivery.open_work_session, delivery.state_session, state_job, running
    )
    try:
        try:
            result = work(ctx)
            ctx.commit()
        finally:
            ctx.settle()
    except Retry:
        raise
    except Exception as exc:
        ctx.rollback()
        if cleanup is not None:
            cleanup(ctx)
        _failed(delivery, state_job, exc)
        return
    jobs.finish(delivery.state_session, delivery.client, state_job, "succeeded", result=result or {})
    log.info("%s succeeded", _tag(state_job))


def _failed(delivery: _Delivery, state_job: Job, exc: Exception) -> None:
    """Retry a transient failure while attempts are left; otherwise finish the job as `exc` says."""
    session, client, tag = delivery.state_session, delivery.client, _tag(state_job)
    if isinstance(exc, TRANSIENT) and state_job.attempts < delivery.max_attempts:
        session.rollback()
        jobs.requeue(session, client, state_job, f"transient error, retrying: {type(exc).__name__}")
        log.warning("%s transient error, retrying: %s", tag, exc)
        countdown = 2**state_job.attempts
        raise delivery.task.retry(countdown=countdown, max_retries=delivery.max_attempts, exc=exc) from exc
    state, outcome = _outcome(exc)
    if not isinstance(exc, EXPECTED):
        log.exception("%s failed with an unexpected error", tag, exc_info=exc)
    else:
        log.warning("%s %s: %s", tag, state, outcome.get("error", {}).get("message", ""))
    jobs.finish(session, client, state_job, state, **outcome)


# Outcomes a job can meet in normal operation: logged as a line, not with a traceback.
# A QueryError is the request's own limit met while the job ran (a free-text group_by larger than
# its estimate): said to the client as it is, like a JobFailed.
EXPECTED = (jobs.JobCancelled, SoftTimeLimitExceeded, JobFailed, QueryError, *TRANSIENT)


def _outcome(exc: Exception) -> tuple[str, dict[str, Any]]:
    """The final state a work function's exception leads to, with the job's result and error."""
    if isinstance(exc, jobs.JobCancelled):
        return "cancelled", {}
    if isinstance(exc, SoftTimeLimitExceeded):
        return "failed", {"error": {"code": "time_limit", "message": "the job exceeded its time limit"}}
    if isinstance(exc, JobFailed):
        return "failed", {
            "result": exc.result,
            "error": {"code": "job_failed", "message": str(exc), **exc.details},
        }
    if isinstance(exc, QueryError):
        error: dict[str, Any] = {"code": "bad_request", "message": str(exc)[:500]}
        if isinstance(exc, TooCostly):  # as the REST answer names it: the estimate and the limit
            error.update(code="too_costly", details=exc.details)
        return "failed", {"error": error}
    if isinstance(exc, TRANSIENT):
        return "failed", {"error": {"code": "transient_error", "message": f"transient error: {exc}"[:500]}}
    return "failed", {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"[:500]}}
