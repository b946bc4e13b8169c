"""Submitting a job: the one answer for identical submissions (idempotent while queued), the caps,
the queue it waits in (fair share), and its hand-over to the broker after the commit."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import DateTime, String, Uuid

from webapp.core.vocabulary import ACTIVE_STATES, JOB_ROUTES, OVERFLOW_QUEUE
from webapp.jobs.transitions import (
    SendsWithCommands,
    TaskQueue,
    finish,
    loaded_job,
    send_update,
    update_command,
)
from webapp.live import events
from webapp.models import Job

log = logging.getLogger(__name__)

TASKS = JOB_ROUTES


class BrokerUnavailable(RuntimeError):
    """The job could not be handed to the broker; nothing was accepted."""


class TooManyActive(RuntimeError):
    """The organization already has `cap` jobs of this kind queued or running; nothing was accepted."""

    def __init__(self, kind: str, active: int, cap: int) -> None:
        super().__init__(
            f"the organization already has {active} {kind} jobs queued or running, the limit of {cap}; "
            "retry once one has finished"
        )
        self.kind, self.active, self.cap = kind, active, cap


# Jobs whose answer goes to the one who asked (an export's file and link, an aggregation's rows):
# identical requests of two users are two jobs, so the one a user waits on is one they may cancel and
# no one else but an admin may. The others' work is the organization's (a snapshot stored for it, its
# cache refreshed) and is shared by whoever asks, beat included.
PERSONAL_KINDS = frozenset({"export", "aggregation"})


def params_hash(kind: str, params: dict[str, Any], user_id: int | None = None) -> str:
    """Hash of the canonical form of a job's parameters, and of its creator for PERSONAL_KINDS: same
    request (of the same user, for those), same hash."""
    body: dict[str, Any] = {"kind": kind, "params": params}
    if user_id is not None and kind in PERSONAL_KINDS:
        body["user"] = user_id
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# An identical job answers a new submission only while queued (as job_submit, migration 0033): once it
# runs it may have read before a write the client has seen acknowledged since.
REUSABLE_STATE = "queued"


def find_active(
    session: Session, org_id: int, kind: str, digest: str, *, reuse_running: bool = False
) -> Job | None:
    """An identical job that may answer a new submission: one still queued (REUSABLE_STATE), or with
    `reuse_running` one running too (beat's first request of a period, which no write went before)."""
    same = (Job.org_id == org_id, Job.kind == kind, Job.params_hash == digest)
    current = Job.state.in_(ACTIVE_STATES) if reuse_running else Job.state == REUSABLE_STATE
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
    redis_answered: bool = False,
) -> tuple[Job, bool]:
    """The job for this request: an identical queued one, or a new one committed and enqueued.

    Returns (job, created). `on_create(job)` runs in the new job's transaction, before its commit.
    Raises TooManyActive when the organization has `cap` jobs of the kind active already (an
    identical one is still answered), BrokerUnavailable when the task could not be enqueued; the row
    is then marked failed so nothing is left waiting for a task that never comes.
    `redis_answered`: `client` answered the caller a moment ago (no need to check it is there).
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
        redis_answered=redis_answered,
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
    reuse_running: bool = False,
) -> tuple[Job | None, bool]:
    """Like submit, but when no identical job answers asks `done()` under the same lock first.

    (None, False) when `done()` says the work is already there (e.g. the snapshot row is stored):
    asked after the active check, a job that finished meanwhile has already written its result.
    `reuse_running`: an identical running job answers too (see find_active).
    """
    return _submit(
        session,
        client,
        tasks,
        org_id=org_id,
        user_id=user_id,
        kind=kind,
        params=params,
        done=done,
        reuse_running=reuse_running,
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
    redis_answered: bool = False,
    reuse_running: bool = False,
) -> tuple[Job | None, bool]:
    digest = params_hash(kind, params, user_id)
    try:
        # Fail fast while Redis is away (every job publishes its progress there; it is usually the
        # broker too): a send to a broker that is down retries before it gives up.
        if not redis_answered:
            client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc
    # Identical submissions one at a time, until this transaction ends: the next one finds the job
    # this one commits. (In PostgreSQL, so that it holds whatever Redis does.)
    key = zlib.crc32(f"{kind}:{digest}".encode()) & 0x7FFFFFFF
    others_active: bool | None = None
    prepared: Any = None
    if done is None:
        # The new job's task message is made while the insert's round trip runs (unused when an
        # identical job answers, or the job goes to the overflow queue).
        new_id = uuid.uuid4()
        route = TASKS[kind]
        if isinstance(tasks, SendsWithCommands):
            prepared = tasks.prepare(route.name, **task_options(str(new_id), route.queue))
        job, created, others_active = _insert_unless_active(
            session,
            new_id=new_id,
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
        existing = find_active(session, org_id, kind, digest, reuse_running=reuse_running)
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
    if others_active is None:
        others_active = _has_other_active(session, job)
    if others_active:
        enqueue(session, client, tasks, job, queue=OVERFLOW_QUEUE)
    else:
        enqueue(session, client, tasks, job, prepared=prepared)
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
    if not session.in_transaction() and isinstance(session.bind, Engine):
        # One statement alone: autocommitted, it is one round trip (no BEGIN, no COMMIT).
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    other = session.scalar(
        select(Job.id)
        .where(Job.org_id == job.org_id, Job.id != job.id, Job.state.in_(ACTIVE_STATES))
        .limit(1)
    )
    session.commit()
    return other is not None


# The lock, the look for an identical job, the cap and the insert in one round trip (migration 0013).
# The outer select says whether the organization had another job active as the statement began
# (fair share, see _has_other_active), so the submission needs no second round trip for it.
_SUBMIT = text(
    "SELECT j.*, EXISTS (SELECT 1 FROM jobs o WHERE o.org_id = j.org_id AND o.id <> j.id"
    " AND o.state = ANY (:active_states)) AS others_active"
    " FROM job_submit(:id, :org_id, :created_by, :kind, :params, :params_hash, :lock_key,"
    " :active_states, :dedup, :succeeded_since, :cap, :cap_lock_key) AS j"
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
    new_id: uuid.UUID,
    org_id: int,
    user_id: int | None,
    kind: str,
    params: dict[str, Any],
    digest: str,
    key: int,
    dedup: bool,
    cap: int | None,
) -> tuple[Job, bool, bool]:
    """The identical queued job (see find_active) or a new queued one inserted in this transaction,
    whether it is new, and whether the organization had another job active (_has_other_active).
    Raises TooManyActive when a new one would pass `cap`."""
    since = None  # (job_submit can also answer with a job that succeeded since then: unused)
    if not session.in_transaction() and isinstance(session.bind, Engine):
        # Nothing else rides on this transaction: the statement commits itself (the lock is released
        # with it), so the submission is one round trip and the commit that follows sends nothing.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        row = session.execute(
            _SUBMIT,
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
    values = dict(row._mapping)
    others_active = bool(values.pop("others_active"))
    job = session.merge(loaded_job(values), load=False)
    return job, job.id == new_id, others_active


# A send to a broker that does not answer is tried twice more within about half a second, then refused.
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def task_options(job_id: str, queue: str) -> dict[str, Any]:
    """Celery's send options for a delivery of the job `job_id` on `queue`: every send of a job (its
    first, a wait for its organization's slot, a slot handed over) uses these."""
    return {
        "args": [job_id],
        "task_id": job_id,
        "queue": queue,
        # The job's row holds its state and result: Celery keeps none (no STARTED or result entries
        # in Redis, and the sender subscribes to no result channel).
        "ignore_result": True,
    }


def enqueue(
    session: Session,
    client: redis.Redis,
    tasks: TaskQueue,
    job: Job,
    *,
    queue: str | None = None,
    prepared: Any = None,
) -> None:
    """Hand a committed job to the broker, with the job id as the task id, on its kind's queue (or
    `queue`), its `queued` event published just before. `prepared`: the message of this very
    delivery (SendsWithCommands.prepare)."""
    route = TASKS[job.kind]
    options = task_options(str(job.id), queue or route.queue)
    try:
        if isinstance(tasks, SendsWithCommands):
            # The event and the task in one round trip, the event first.
            replies = tasks.send_task_after([update_command(job)], route.name, prepared=prepared, **options)
            if replies is not None:
                events.event_id(replies[0], job.org_id, "job_update")
                return
        # Sent before the task is: a worker that takes it at once publishes `running` after this. The
        # event's reply is read once the task is sent, so the two round trips overlap.
        queued = send_update(client, job)
        try:
            tasks.send_task(route.name, retry=True, retry_policy=SEND_RETRY_POLICY, **options)
        finally:
            queued.done()
    except Exception as exc:  # kombu raises several connection error types
        log.warning("enqueue failed job=%s org=%s: %s", job.id, job.org_id, exc)
        finish(
            session,
            client,
            job,
            "failed",
            error={"code": "queue_unavailable", "message": "the job queue is unavailable"},
        )
        raise BrokerUnavailable("the job queue is unavailable; try again shortly") from exc
