"""A job's state changes once it exists (the worker's claim, queued to running, is in `claim`): progress,
the final state, a requeue before a retry, a cancel; each published to the organization's live clients."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import redis
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import DateTime, String, Uuid

from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import ACTIVE_STATES, FINAL_STATES
from webapp.live import events
from webapp.models import Job


class JobCancelled(Exception):
    """Raised at a progress checkpoint once a cancel was requested."""


class JobNotCancellable(ValueError):
    """The job is final already: nothing is left to cancel."""


class Revoker(Protocol):
    """Celery's control: revoking a task its workers have not started."""

    def revoke(self, task_id: str) -> Any:
        """Tell the workers to discard the task `task_id` unstarted."""


class TaskQueue(Protocol):
    """What the job platform asks of the task queue (a Celery app is one): send a task, revoke one."""

    @property
    def control(self) -> Revoker:
        """The workers' remote control."""

    def send_task(self, name: str, **options: Any) -> Any:
        """Send the task `name` to the broker (Celery's options: args, task_id, queue, retry...)."""


@runtime_checkable
class SendsWithCommands(Protocol):
    """A task queue that can send Redis commands and a task in one round trip (its broker is Redis)."""

    def prepare(self, name: str, **options: Any) -> Any:
        """Start making the message of the task `name` with `options` beside the caller's own work
        (its wait for the database): pass it to send_task_after as `prepared` (None: nothing made)."""

    def send_task_after(
        self, before: Sequence[Sequence[Any]], name: str, *, prepared: Any = None, **options: Any
    ) -> list[Any] | None:
        """Run the Redis commands `before`, then send the task `name` (its message made by `prepare`
        with the same name and options, when given), in one round trip: their replies (an error
        reply is an exception). None when it cannot (nothing was sent then); raises when the task
        could not be sent."""


# A job_update goes through a capped stream to every live client: a bigger result is fetched over REST.
MAX_EVENT_RESULT_BYTES = 32 * 1024


def job_event(job: Job) -> dict[str, Any]:
    """The data of the job's job_update event (a large result is left to REST)."""
    event = {
        "job_id": str(job.id),
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
    }
    if job.result is not None and len(json.dumps(job.result, default=str)) > MAX_EVENT_RESULT_BYTES:
        event["result"] = None
        event["result_omitted"] = True
    return event


def publish(client: redis.Redis, job: Job) -> None:
    """Tell the organization's live clients where the job stands."""
    events.publish(client, job.org_id, "job_update", job_event(job))


def update_command(job: Job) -> list[Any]:
    """The Redis command that publishes the job's job_update (see events.xadd_command)."""
    return events.xadd_command(job.org_id, "job_update", job_event(job))


def send_update(client: redis.Redis, job: Job) -> events.Sent:
    """Like publish, with the reply read later (`done()` on what this returns): see events.send."""
    return events.send(client, job.org_id, "job_update", job_event(job))


def loaded_job(values: dict[str, Any]) -> Job:
    """A detached Job holding `values` as if loaded from its row (attributes not given are expired):
    added to a session it is persistent at once, with nothing to flush and no query made."""
    job = Job(**values)
    make_transient_to_detached(job)
    return job


def start(session: Session, client: redis.Redis, job: Job) -> None:
    """Mark the job running and count the attempt."""
    now = utcnow()
    job.state = "running"
    job.attempts += 1
    job.started_at = job.started_at or now
    job.updated_at = now
    session.commit()
    publish(client, job)


# A checkpoint: record progress unless a cancel was asked for (then nothing changes and no row returns).
_PROGRESS = text(
    "UPDATE jobs SET progress = greatest(progress, :value), updated_at = :now "
    "WHERE id = :id AND NOT cancel_requested AND state <> 'cancelled' "
    "RETURNING progress, updated_at"
).bindparams(bindparam("id", type_=Uuid()), bindparam("now", type_=DateTime(timezone=True)))


def progress(session: Session, client: redis.Redis, job: Job, value: float) -> None:
    """Record progress (0..1); raise JobCancelled if a cancel was requested meanwhile."""
    value = min(1.0, round(value, 4))
    row = session.execute(_PROGRESS, {"id": job.id, "value": value, "now": utcnow()}).first()
    session.commit()
    if row is None:
        raise JobCancelled(str(job.id))
    _loaded(job, row)
    publish(client, job)


# A final state once: only an active job moves, and the row's new values come back in the same statement.
_FINISH = text(
    "UPDATE jobs SET state = :state, result = :result, error = :error, "
    "progress = CASE WHEN :succeeded THEN 1.0 ELSE progress END, "
    "finished_at = :now, updated_at = :now "
    "WHERE id = :id AND state = ANY (:active_states) "
    "RETURNING state, progress, result, error, finished_at, updated_at"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("result", type_=JSONB(none_as_null=True)),
    bindparam("error", type_=JSONB(none_as_null=True)),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("active_states", type_=ARRAY(String())),
)


def finish(
    session: Session,
    client: redis.Redis,
    job: Job,
    state: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Move the job to a final state (once: a final job stays as it is)."""
    if state not in FINAL_STATES:
        raise ValueError(f"{state} is not a final state")
    row = session.execute(
        _FINISH,
        {
            "id": job.id,
            "state": state,
            "succeeded": state == "succeeded",
            "result": result,
            "error": error,
            "now": utcnow(),
            "active_states": list(ACTIVE_STATES),
        },
    ).first()
    session.commit()
    if row is None:
        # Final already (another delivery, a cancel): the caller sees what the row says.
        session.refresh(job, list(_FINAL_FIELDS))
        return
    _loaded(job, row)
    publish(client, job)


_FINAL_FIELDS = ("state", "progress", "result", "error", "finished_at", "updated_at")


def _loaded(job: Job, row: Row[Any]) -> None:
    """Set `job`'s attributes to what the database returned, as if loaded (nothing to flush)."""
    for name, value in row._mapping.items():
        set_committed_value(job, name, value)


def requeue(session: Session, client: redis.Redis, job: Job, reason: str) -> None:
    """Back to queued before a retry after a transient error."""
    job.state = "queued"
    job.error = {"code": "transient_error", "message": reason, "transient": True}
    job.updated_at = utcnow()
    session.commit()
    publish(client, job)


def cancel(session: Session, client: redis.Redis, tasks: TaskQueue, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next checkpoint."""
    if job.state in FINAL_STATES:
        raise JobNotCancellable(f"job is already {job.state}")
    job.cancel_requested = True
    session.commit()
    if job.state == "queued":
        # Revoke only what has not started: a revoked running task redelivered after a crash would be
        # discarded by the worker unseen, leaving its job running forever; the checkpoint stops it.
        tasks.control.revoke(str(job.id))
        finish(session, client, job, "cancelled")
    return job
