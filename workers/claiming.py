"""A delivery's claim on its job: the run lock and the organization's share slot held on a connection
of their own, a delivery deferred while its organization's slots are all held, a slot handed to the
organization's next waiting job, and a run lock's connection lost mid-run."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

from celery import Task
from flask import current_app
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from webapp.core.vocabulary import JOB_ROUTES, OVERFLOW_QUEUE
from webapp.jobs import claim, recovery, submission

log = logging.getLogger("workers.jobs")


STATE_LOST_RETRY_SECONDS = 2


class StateLost(Exception):
    """The run lock's connection was lost after the claim held it (the cause says how)."""


def connection_lost(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from or while handling (a reconnect that failed after
    the connection was found gone), says a connection is gone: not a statement's own failure (a
    deadlock, a lock or statement timeout) on a live one."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# A queued job of an organization already running its share asks again this long after (a job that
# ends hands its slot to the organization's next waiting job at once: this is the fallback, for a
# slot given back by a worker that died).
FAIR_SHARE_DEFER_SECONDS = 10
# The header of a delivery wait_for_slot deferred: when it is due it only sends the job again (see
# take_turn).
DEFERRED_HEADER = "fair_share_deferred"


def wait_for_slot(task: Task, job_id: str, taken: claim.Claim) -> None:
    """Every one of its organization's JOB_MAX_RUNNING_PER_ORG slots is held: the job stays queued (the
    claim wrote its wait to updated_at, so that the lost-job sweep does not take it for lost) and is
    sent again to the overflow queue shortly, giving this worker slot to another organization. A new
    message rather than task.retry: waiting for a slot spends none of the retries a transient error
    is allowed."""
    cap = share()
    log.info("job=%s org=%s waits: its organization runs %s jobs already", job_id, taken.org_id, cap)
    task.app.send_task(
        task.name,
        countdown=FAIR_SHARE_DEFER_SECONDS,
        headers={DEFERRED_HEADER: True},
        **submission.task_options(job_id, OVERFLOW_QUEUE),
    )


def take_turn(task: Task, job_id: str) -> None:
    """A deferred delivery that is due: the job is sent again to the overflow queue at once, and only
    that delivery claims it. Celery keeps a countdown's message in the worker that took it and runs
    it when due ahead of every message still in the queues, and while any due one waits for a pool
    process the worker takes nothing from the broker (prefetch): claimed here, the deferred
    deliveries of an organization with many queued jobs took each worker slot that came free, one of
    its jobs after another, while another organization's job waited in its queue (47 s seen, the
    other slot held by a long beat task). Sent again, the job takes its turn among the queues."""
    task.app.send_task(task.name, **submission.task_options(job_id, OVERFLOW_QUEUE))


@contextlib.contextmanager
def claimed(
    engine: Engine, job_id: str, max_attempts: int
) -> Iterator[tuple[claim.Claim, Connection | None]]:
    """The delivery's claim (see claim.claim) and the connection that holds its run lock and share
    slot while the block runs (None: another delivery holds the run lock, or the job waits for a slot).

    Session-level locks on a connection of their own: PostgreSQL releases them when the connection
    ends, so a worker that dies leaves nothing behind for the next delivery. (The run lock's one-bigint
    key does not clash with the two-key locks of rollups, submissions and slots.)
    """
    key = recovery.run_lock_key(job_id)
    slots = share()
    waiting: claim.Waiting | None = None
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            taken = claim.claim(conn, uuid.UUID(job_id), lock_key=key, slots=slots, max_attempts=max_attempts)
            try:
                yield taken, (conn if taken.held else None)
            finally:
                try:
                    waiting = claim.release(conn, taken, key, uuid.UUID(job_id))
                except (sa_exc.DBAPIError, sa_exc.PendingRollbackError):
                    conn.invalidate()  # closed, not pooled: the server drops the locks with it
    finally:
        if waiting is not None:
            hand_over(waiting)


def share() -> int:
    """JOB_MAX_RUNNING_PER_ORG, or half of the worker's slots where it is unset (a worker sets it as it
    starts; this covers a run outside one)."""
    celery_app = current_app.extensions["celery"]
    slots = claim.worker_slots(None, celery_app.conf.worker_concurrency)
    return claim.running_share(current_app.config.get("JOB_MAX_RUNNING_PER_ORG"), slots)


def hand_over(waiting: claim.Waiting) -> None:
    """Send again, now, the organization's job that waits for the share slot this delivery gave back
    (its own delivery would ask again only FAIR_SHARE_DEFER_SECONDS after its last try). A second
    delivery of a job is harmless: the claim lets one run it."""
    route = JOB_ROUTES[waiting.kind]
    try:
        current_app.extensions["celery"].send_task(
            route.name, **submission.task_options(str(waiting.id), OVERFLOW_QUEUE)
        )
    except Exception as exc:  # kombu raises several connection error types; its own retry comes later
        log.warning("job=%s could not be handed the slot given back: %s", waiting.id, exc)
