"""The lifecycle every job task shares: load, start, work with progress, finish exactly once."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, defer

from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import FINAL_STATES, OVERFLOW_QUEUE
from webapp.infra.db import session_factory
from webapp.infra.redis_client import get_redis
from webapp.jobs import lifecycle as jobs
from webapp.jobs import recovery, share
from webapp.models import Job

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


@dataclass
class JobContext:
    """What a job's work function gets: its own session, the job, and a progress reporter."""

    session: Session
    job: Job
    client: redis.Redis
    _state_session: Session = field(repr=False)
    _state_job: Job = field(repr=False)

    @property
    def params(self) -> dict[str, Any]:
        """The job's parameters (read by the work session only)."""
        return self.job.params

    def report(self, fraction: float) -> None:
        """Record progress; raises JobCancelled once a cancel was requested."""
        jobs.progress(self._state_session, self.client, self._state_job, fraction)

    def log(self, message: str, *args: Any) -> None:
        """Log `message` with the job, organization and kind in front."""
        log.info("job=%s org=%s kind=%s " + message, self.job.id, self.job.org_id, self.job.kind, *args)


@dataclass
class _Delivery:
    """One delivery of a job's task: its sessions (state changes, work) and its limits."""

    task: Task
    state_session: Session
    work_session: Session
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
    make_session = session_factory()
    engine = current_app.extensions["db_engine"]
    with _exclusive(engine, job_id) as state_conn:
        if state_conn is None:
            log.warning("job=%s is being run by another delivery; dropping this one", job_id)
            return
        # Each session keeps its one connection for the whole job: no pool checkout (with its
        # liveness ping) at every commit. The state session's connection is the lock's, autocommit:
        # every state change is a single statement, committed as it runs.
        with (
            engine.connect() as work_conn,
            make_session(bind=state_conn) as state_session,
            make_session(bind=work_conn) as work_session,
        ):
            max_attempts = current_app.config["JOB_MAX_ATTEMPTS"]
            delivery = _Delivery(task, state_session, work_session, get_redis(), max_attempts)
            state_job = _ready(delivery, job_id)
            if state_job is None:
                return
            cap = current_app.config["JOB_MAX_RUNNING_PER_ORG"]
            slot = share.take_slot(state_conn, state_job.org_id, cap)
            if slot is None:
                _wait_for_share(delivery, state_job, job_id, cap)
                return
            try:
                _run(delivery, state_job, work, cleanup)
            finally:
                with contextlib.suppress(sa_exc.DBAPIError):  # a lost connection gave it back already
                    share.release_slot(state_conn, state_job.org_id, slot)


def _wait_for_share(delivery: _Delivery, job: Job, job_id: str, cap: int) -> None:
    """Give the worker slot back: the job stays queued (its wait recorded in updated_at, so that the
    lost-job sweep does not take it for lost) and is sent again to the overflow queue shortly. A new
    message rather than task.retry: waiting for a slot spends none of the retries a transient error
    is allowed."""
    log.info("%s waits: its organization runs %s jobs already (JOB_MAX_RUNNING_PER_ORG)", _tag(job), cap)
    job.updated_at = utcnow()
    delivery.state_session.commit()
    delivery.task.app.send_task(
        delivery.task.name,
        args=[job_id],
        task_id=job_id,
        queue=OVERFLOW_QUEUE,
        countdown=FAIR_SHARE_DEFER_SECONDS,
    )


# A job of an organization already running its share waits this long before it asks again.
FAIR_SHARE_DEFER_SECONDS = 2


@contextlib.contextmanager
def _exclusive(engine: Engine, job_id: str) -> Iterator[Connection | None]:
    """The job's run lock, held on the yielded connection while the block runs (None: another
    delivery holds it).

    A session-level lock on a connection of its own: PostgreSQL releases it when the connection ends,
    so a worker that dies leaves nothing behind for the next delivery. (A one-bigint key: no clash
    with the two-key locks of rollups and submissions.)
    """
    key = recovery.run_lock_key(job_id)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        got = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
        try:
            yield conn if got else None
        finally:
            if got:
                try:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                except sa_exc.DBAPIError:
                    conn.invalidate()  # closed, not pooled: the server drops the lock with it


def _tag(job: Job) -> str:
    return f"job={job.id} org={job.org_id} kind={job.kind}"


def _ready(delivery: _Delivery, job_id: str) -> Job | None:
    """The job to start now, or None when this delivery has nothing to do (the job is final, was
    cancelled before it started, or lost its worker too often)."""
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
        jobs.finish(session, client, job, "failed", error={"message": gave_up})
        log.error("%s failed: too many attempts", _tag(job))
        return None
    return job


def _run(
    delivery: _Delivery,
    state_job: Job,
    work: Callable[[JobContext], dict[str, Any] | None],
    cleanup: Callable[[JobContext], None] | None,
) -> None:
    """Start the job, run `work` in the work session, and finish the job with what came of it."""
    jobs.start(delivery.state_session, delivery.client, state_job)
    log.info("%s started attempt %s", _tag(state_job), state_job.attempts)
    work_job = delivery.work_session.get(Job, state_job.id)
    assert work_job is not None
    ctx = JobContext(delivery.work_session, work_job, delivery.client, delivery.state_session, state_job)
    try:
        result = work(ctx)
        delivery.work_session.commit()
    except Retry:
        raise
    except Exception as exc:
        delivery.work_session.rollback()
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
EXPECTED = (jobs.JobCancelled, SoftTimeLimitExceeded, JobFailed, *TRANSIENT)


def _outcome(exc: Exception) -> tuple[str, dict[str, Any]]:
    """The final state a work function's exception leads to, with the job's result and error."""
    if isinstance(exc, jobs.JobCancelled):
        return "cancelled", {}
    if isinstance(exc, SoftTimeLimitExceeded):
        return "failed", {"error": {"message": "the job exceeded its time limit"}}
    if isinstance(exc, JobFailed):
        return "failed", {"result": exc.result, "error": {"message": str(exc), **exc.details}}
    if isinstance(exc, TRANSIENT):
        return "failed", {"error": {"message": f"transient error: {exc}"[:500]}}
    return "failed", {"error": {"message": f"{type(exc).__name__}: {exc}"[:500]}}
