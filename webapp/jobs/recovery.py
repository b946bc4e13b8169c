"""Jobs a lost worker or a lost message would leave unfinished: found, and their tasks sent again.

A worker holds a job's run lock (run_lock_key) while it runs it; a running job whose lock nobody
holds has lost its worker. A queued job whose message waits in no queue has lost its message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Container
from datetime import timedelta

import redis
from sqlalchemy import and_, or_, select, text
from sqlalchemy.orm import Session

from webapp.core.timeutil import utcnow
from webapp.jobs.submission import TaskQueue, enqueue
from webapp.models import Job

log = logging.getLogger(__name__)

# Jobs looked at per sweep; the rest wait for the next one.
SWEEP_LIMIT = 500


def run_lock_key(job_id: uuid.UUID | str) -> int:
    """The advisory lock (one bigint key) a worker holds while it runs the job: its liveness signal."""
    value = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    return int.from_bytes(value.bytes[:8], "big", signed=True)


def orphaned(session: Session, candidates: list[Job]) -> list[Job]:
    """The running jobs among `candidates` whose run lock nobody holds: their worker is gone."""
    if not candidates:
        return []
    held = set(
        session.scalars(
            text(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
                "WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
    )
    return [job for job in candidates if job.state == "running" and run_lock_key(job.id) not in held]


def requeue_lost(
    session: Session,
    client: redis.Redis,
    tasks: TaskQueue,
    *,
    stale_after: timedelta,
    waiting: Callable[[], Container[str]],
) -> list[Job]:
    """Send again the task of every job a lost worker or a lost message would leave unfinished.

    - A running job whose run lock nobody holds: its worker died (a killed worker's message would
      otherwise come back only after the broker's visibility timeout).
    - A job queued for longer than `stale_after` whose id is not in `waiting()` (the task ids of the
      messages waiting in the queues): the broker lost it (one a worker had popped but not yet
      recorded when the connection dropped), or a dead worker had reserved it.
    Sending a task again is safe: a delivery of a finished job does nothing, and one that finds the
    job being run by another delivery is dropped (workers/runner.py).
    """
    now = utcnow()
    candidates = list(
        session.scalars(
            select(Job)
            .where(
                or_(
                    and_(Job.state == "queued", Job.updated_at < now - stale_after),
                    # A worker takes the run lock before the job turns running and lets it go after
                    # the job is final: running without the lock means its worker is gone.
                    Job.state == "running",
                )
            )
            .order_by(Job.updated_at)
            .limit(SWEEP_LIMIT)
            .with_for_update(skip_locked=True)
        )
    )
    queued = [job for job in candidates if job.state == "queued"]
    in_queues = waiting() if queued else ()
    lost = [job for job in queued if str(job.id) not in in_queues]
    lost += orphaned(session, [job for job in candidates if job.state == "running"])
    for job in lost:
        job.updated_at = utcnow()  # the next sweep waits its full period again
    session.commit()
    for job in lost:
        cause = "lost its worker" if job.state == "running" else "lost its message"
        log.warning("job=%s org=%s kind=%s %s; sending it again", job.id, job.org_id, job.kind, cause)
        enqueue(session, client, tasks, job)
    return lost
