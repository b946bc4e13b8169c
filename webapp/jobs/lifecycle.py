"""Jobs: create a row, enqueue after commit, and every state transition (each published)."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import redis
from sqlalchemy import and_, bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import DateTime, String, Uuid

from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import ACTIVE_STATES, FINAL_STATES, JOB_ROUTES, OVERFLOW_QUEUE
from webapp.live import events
from webapp.models import Job

log = logging.getLogger(__name__)


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


TASKS = JOB_ROUTES


class BrokerUnavailable(RuntimeError):
    """The job could not be handed to the broker; nothing was accepted."""


class JobCancelled(Exception):
    """Raised at a progress checkpoint once a cancel was requested."""


class JobNotCancellable(ValueError):
    """The job is final already: nothing is left to cancel."""


class TooManyActive(RuntimeError):
    """The organization already has `cap` jobs of this kind queued or running; nothing was accepted."""

    def __init__(self, kind: str, active: int, cap: int) -> None:
        super().__init__(
            f"the organization already has {active} {kind} jobs queued or running, the limit of {cap}; "
            "retry once one has finished"
        )
        self.kind, self.active, self.cap = kind, active, cap


def params_hash(kind: str, params: dict[str, Any]) -> str:
    """Hash of the canonical form of a job's parameters: same request, same hash."""
    canonical = json.dumps(
        {"kind": kind, "params": params}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


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


# An import that succeeded this recently answers an identical submission: two sends of one batch
# (a retry after a timeout, a double click) import it once, even when the first was quick to finish.
IMPORT_REPEAT_SECONDS = 60


def find_active(session: Session, org_id: int, kind: str, digest: str) -> Job | None:
    """An identical job still queued or running (for imports: or succeeded a moment ago)."""
    same = (Job.org_id == org_id, Job.kind == kind, Job.params_hash == digest)
    current = Job.state.in_(ACTIVE_STATES)
    if kind == "import":
        recent = utcnow() - timedelta(seconds=IMPORT_REPEAT_SECONDS)
        current = or_(current, and_(Job.state == "succeeded", Job.finished_at >= recent))
    return session.scalar(select(Job).where(*same, current).order_by(Job.created_at).limit(1))


def count_active(session: Session, org_id: int, kind: str, *, lock: bool = False) -> int:
    """How many `kind` jobs of `org_id` are queued or running.

    With `lock`, first take a transaction-scoped advisory lock on (org, kind), so submissions that
    check a cap and then insert run one at a time per organization until the session commits.
    """
    if lock:
        session.execute(select(func.pg_advisory_xact_lock(org_id, zlib.crc32(kind.encode()) & 0x7FFFFFFF)))
    return (
        session.scalar(
            select(func.count()).where(Job.org_id == org_id, Job.kind == kind, Job.state.in_(ACTIVE_STATES))
        )
        or 0
    )


def submit(
    session: Session,
    client: redis.Redis,
    tasks: TaskQueue,
    *,
    org_id: int,
    user_id: int | None,
    kind: str,
    params: dict[str, Any],
    dedup: bool = True,
    cap: int | None = None,
    on_create: Callable[[Job], None] | None = None,
) -> tuple[Job, bool]:
    """The job for this request: an identical active one, or a new one committed and enqueued.

    Returns (job, created). `on_create(job)` runs in the new job's transaction, before its commit.
    Raises TooManyActive when the organization has `cap` jobs of the kind active already (an
    identical one is still answered), BrokerUnavailable when the task could not be enqueued; the row
    is then marked failed so nothing is left waiting for a task that never comes.
    """
    job, created = _submit(
        session,
        client,
        tasks,
        org_id=org_id,
        user_id=user_id,
        kind=kind,
        params=params,
        dedup=dedup,
        cap=cap,
        on_create=on_create,
    )
    assert job is not None
    return job, created


def submit_unless(
    session: Session,
    client: redis.Redis,
    tasks: TaskQueue,
    *,
    org_id: int,
    user_id: int | None,
    kind: str,
    params: dict[str, Any],
    done: Callable[[], bool],
) -> tuple[Job | None, bool]:
    """Like submit, but when no identical job is active asks `done()` under the same lock first.

    (None, False) when `done()` says the work is already there (e.g. the snapshot row is stored):
    asked after the active check, a job that finished meanwhile has already written its result.
    """
    return _submit(
        session, client, tasks, org_id=org_id, user_id=user_id, kind=kind, params=params, done=done
    )


def _submit(
    session: Session,
    client: redis.Redis,
    tasks: TaskQueue,
    *,
    org_id: int,
    user_id: int | None,
    kind: str,
    params: dict[str, Any],
    dedup: bool = True,
    done: Callable[[], bool] | None = None,
    cap: int | None = None,
    on_create: Callable[[Job], None] | None = None,
) -> tuple[Job | None, bool]:
    digest = params_hash(kind, params)
    try:
        # Fail fast while Redis is away (every job publishes its progress there; it is usually the
        # broker too): a send to a broker that is down retries before it gives up.
        client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc
    # Identical submissions one at a time, until this transaction ends: the next one finds the job
    # this one commits. (In PostgreSQL, so that it holds whatever Redis does.)
    key = zlib.crc32(f"{kind}:{digest}".encode()) & 0x7FFFFFFF
    if done is None:
        job, created = _insert_unless_active(
            session,
            org_id=org_id,
            user_id=user_id,
            kind=kind,
            params=params,
            digest=digest,
            key=key,
            dedup=dedup,
            cap=cap,
        )
    else:
        session.execute(select(func.pg_advisory_xact_lock(org_id, key)))
        existing = find_active(session, org_id, kind, digest)
        if existing is not None:
            return existing, False
        if done():
            return None, False
        if cap is not None:
            _check_cap(session, org_id, kind, cap)
        job = Job(
            id=uuid.uuid4(),
            org_id=org_id,
            created_by=user_id,
            kind=kind,
            params=params,
            params_hash=digest,
            state="queued",
            progress=0.0,
            attempts=0,
        )
        session.add(job)
        created = True
    if created and on_create is not None:
        session.flush()
        on_create(job)
    session.commit()
    if not created:
        return job, False
    enqueue(session, client, tasks, job, queue=OVERFLOW_QUEUE if _has_other_active(session, job) else None)
    return job, True


def _check_cap(session: Session, org_id: int, kind: str, cap: int) -> None:
    """Raise TooManyActive (rolling back) when `org_id` has `cap` active `kind` jobs; the (org, kind)
    advisory lock it takes holds until the transaction ends, so checks and inserts go one at a time."""
    active = count_active(session, org_id, kind, lock=True)
    if active >= cap:
        session.rollback()
        raise TooManyActive(kind, active, cap)


def _has_other_active(session: Session, job: Job) -> bool:
    """Whether the job's organization had another job active when it was submitted.

    Fair share: an organization's first active job waits in its kind's queue; the ones it adds while
    that runs wait in the overflow queue, which workers take from in turn with the others, so one
    organization's flood is one queue among several, not a line in front of everyone.
    """
    other = session.scalar(
        select(Job.id)
        .where(Job.org_id == job.org_id, Job.id != job.id, Job.state.in_(ACTIVE_STATES))
        .limit(1)
    )
    session.commit()
    return other is not None


# The lock, the look for an identical job, the cap and the insert in one round trip (migration 0013).
_SUBMIT = text(
    "SELECT * FROM job_submit(:id, :org_id, :created_by, :kind, :params, :params_hash, :lock_key, "
    ":active_states, :dedup, :succeeded_since, :cap, :cap_lock_key)"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("params", type_=JSONB()),
    bindparam("active_states", type_=ARRAY(String())),
    bindparam("succeeded_since", type_=DateTime(timezone=True)),
)
# What job_submit raises when the cap is reached; the active count is the error's detail.
CAP_REACHED = "job cap reached"


def _insert_unless_active(
    session: Session,
    *,
    org_id: int,
    user_id: int | None,
    kind: str,
    params: dict[str, Any],
    digest: str,
    key: int,
    dedup: bool,
    cap: int | None,
) -> tuple[Job, bool]:
    """The identical active job (see find_active) or a new queued one inserted in this transaction,
    and whether it is new. Raises TooManyActive when a new one would pass `cap`."""
    new_id = uuid.uuid4()
    since = utcnow() - timedelta(seconds=IMPORT_REPEAT_SECONDS) if kind == "import" else None
    if not session.in_transaction() and isinstance(session.bind, Engine):
        # Nothing else rides on this transaction: the statement commits itself (the lock is released
        # with it), so the submission is one round trip and the commit that follows sends nothing.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        job = session.scalars(
            select(Job).from_statement(_SUBMIT),
            {
                "id": new_id,
                "org_id": org_id,
                "created_by": user_id,
                "kind": kind,
                "params": params,
                "params_hash": digest,
                "lock_key": key,
                "active_states": list(ACTIVE_STATES),
                "dedup": dedup,
                "succeeded_since": since,
                "cap": cap,
                "cap_lock_key": zlib.crc32(kind.encode()) & 0x7FFFFFFF,
            },
        ).one()
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        if diag is None or diag.message_primary != CAP_REACHED:
            raise
        session.rollback()
        raise TooManyActive(kind, int(diag.message_detail or cap or 0), cap or 0) from exc
    return job, job.id == new_id


def enqueue(
    session: Session, client: redis.Redis, tasks: TaskQueue, job: Job, *, queue: str | None = None
) -> None:
    """Hand a committed job to the broker, with the job id as the task id, on its kind's queue (or
    `queue`)."""
    route = TASKS[job.kind]
    try:
        tasks.send_task(
            route.name,
            args=[str(job.id)],
            task_id=str(job.id),
            queue=queue or route.queue,
            # The job's row holds its state and result: Celery keeps none (no STARTED or result
            # entries in Redis, and the sender subscribes to no result channel).
            ignore_result=True,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )
    except Exception as exc:  # kombu raises several connection error types
        log.warning("enqueue failed job=%s org=%s: %s", job.id, job.org_id, exc)
        finish(session, client, job, "failed", error={"message": "the job queue is unavailable"})
        raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc
    publish(client, job)


def get_job(session: Session, org_id: int, job_id: str) -> Job | None:
    """The job `job_id` of `org_id`, or None (also for ids that are not UUIDs)."""
    try:
        key = uuid.UUID(job_id)
    except ValueError:
        return None
    return session.scalar(select(Job).where(Job.id == key, Job.org_id == org_id))


def list_jobs(
    session: Session,
    org_id: int,
    *,
    state: list[str] | None,
    kind: list[str] | None,
    limit: int,
    before: tuple[Any, uuid.UUID] | None,
) -> list[Job]:
    """Newest first, filtered by state and kind, after a (created_at, id) cursor."""
    query = select(Job).where(Job.org_id == org_id)
    if state:
        query = query.where(Job.state.in_(state))
    if kind:
        query = query.where(Job.kind.in_(kind))
    if before is not None:
        created_at, job_id = before
        query = query.where(
            (Job.created_at < created_at) | ((Job.created_at == created_at) & (Job.id < job_id))
        )
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))


# The run lock a worker holds while it runs the job, and the job's start, in one statement: the job
# turns running (one more attempt) only when the lock was free and the job may start (active, no
# cancel asked for, attempts left). The row comes back with its parameters, for the work to read.
_CLAIM = text(
    "WITH run_lock AS MATERIALIZED (SELECT pg_try_advisory_lock(:lock_key) AS held), "
    "started AS ("
    "UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, "
    "started_at = coalesce(jobs.started_at, :now), updated_at = :now "
    "FROM run_lock WHERE run_lock.held AND jobs.id = :id AND jobs.state = ANY (:active_states) "
    "AND NOT jobs.cancel_requested AND jobs.attempts < :max_attempts RETURNING jobs.*) "
    "SELECT run_lock.held, started.* FROM run_lock LEFT JOIN started ON true"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("active_states", type_=ARRAY(String())),
)


def claim(
    conn: Connection, job_id: uuid.UUID, *, lock_key: int, max_attempts: int
) -> tuple[bool, Job | None]:
    """Try the run lock `lock_key` on `conn` (an autocommit connection) and start the job with it.

    Returns (whether the lock is now held on `conn`, the started job or None). A job that could not
    start while the lock was taken (unknown, final, cancel asked for, out of attempts) comes back as
    None: the caller looks at it with the lock held. The job is detached, its attributes loaded.
    """
    row = conn.execute(
        _CLAIM,
        {
            "lock_key": lock_key,
            "id": job_id,
            "now": utcnow(),
            "active_states": list(ACTIVE_STATES),
            "max_attempts": max_attempts,
        },
    ).one()
    values = dict(row._mapping)
    held = bool(values.pop("held"))
    if not held or values["id"] is None:
        return held, None
    return held, loaded_job(values)


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
    job.error = {"message": reason, "transient": True}
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
