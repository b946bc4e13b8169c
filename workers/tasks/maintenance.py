"""Beat's housekeeping: export file retention, expired token revocations, jobs whose message was lost,
warming the cache."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from celery import shared_task
from flask import current_app
from sqlalchemy import and_, or_, select

from webapp.analytics import popular
from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.jobs import lifecycle as jobs
from webapp.models import Job, Organization
from webapp.models.jobs import Export
from webapp.security import revocation

log = logging.getLogger(__name__)

BATCH = 500


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def _remove(path: Path, root: Path) -> bool:
    """Delete `path` if it lies under `root` (a row must never make us delete elsewhere)."""
    if not _inside(path, root):
        log.error("export path %s is outside %s; not deleting it", path, root)
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@shared_task(name="maintenance.cleanup_exports", acks_late=True)
def cleanup_exports(now: str | None = None) -> dict[str, Any]:
    """Delete export files older than EXPORT_RETENTION_DAYS and mark their rows deleted.

    Rows stay (with deleted_at) so a late download says the file is gone rather than unknown.
    Files no row knows of (temp files of killed workers) are deleted once as old as the retention.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    cutoff = moment - timedelta(days=current_app.config["EXPORT_RETENTION_DAYS"])
    root = Path(current_app.config["EXPORT_DIR"]).resolve()
    expired = files = 0
    with session_scope() as session:
        while True:
            rows = session.scalars(
                select(Export)
                .where(Export.deleted_at.is_(None), Export.created_at < cutoff)
                .order_by(Export.created_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            for export in rows:
                files += _remove(Path(export.path), root)
                export.deleted_at = moment
            session.commit()
            expired += len(rows)
            if len(rows) < BATCH:
                break
        known = {
            str(Path(p).resolve())
            for p in session.scalars(select(Export.path).where(Export.deleted_at.is_(None)))
        }
    strays = 0
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and str(path) not in known and path.stat().st_mtime < cutoff.timestamp():
                strays += _remove(path, root)
    log.info("export cleanup: %s rows expired, %s files and %s strays deleted", expired, files, strays)
    return {"expired": expired, "files_deleted": files, "strays_deleted": strays}


@shared_task(name="maintenance.cleanup_revoked_tokens", acks_late=True)
def cleanup_revoked_tokens(now: str | None = None) -> dict[str, Any]:
    """Delete revocations of tokens past their expiry (such tokens are refused as expired anyway)."""
    moment = datetime.fromisoformat(now) if now else utcnow()
    with session_scope() as session:
        deleted = revocation.delete_expired(session, moment)
    log.info("revoked-token cleanup: %s expired rows deleted", deleted)
    return {"deleted": deleted}


# kombu's Redis transport keeps a queue's messages in one list per priority step.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def _waiting_in_queues(client: redis.Redis) -> bytes:
    """Every message waiting in a queue (not yet taken by a worker), concatenated, to look ids up in."""
    queues = {route.queue for route in jobs.TASKS.values()}
    pipe = client.pipeline(transaction=False)
    for queue in sorted(queues):
        for step in _PRIORITY_STEPS:
            pipe.lrange(f"{queue}{_PRIORITY_SEPARATOR}{step}" if step else queue, 0, -1)
    found: list[bytes] = []
    for reply in pipe.execute():
        found.extend(reply)
    return b"\n".join(found)


@shared_task(name="maintenance.requeue_lost_jobs", acks_late=True)
def requeue_lost_jobs(older_than: int | None = None) -> dict[str, Any]:
    """Send again the task of every job a lost worker or a lost message would leave unfinished.

    - A running job whose run lock (webapp.jobs.run_lock_key) nobody holds: its worker died (a
      killed worker's message would otherwise come back only after the broker's visibility timeout).
    - A job queued for longer than `older_than` s whose message waits in no queue: the broker lost it
      (one a worker had popped but not yet recorded when the connection dropped), or a dead worker
      had reserved it.
    Sending a task again is safe: a delivery of a finished job does nothing, and one that finds the
    job being run by another delivery is dropped (workers/runner.py). Beat runs this every minute,
    and every worker asks for it once when it starts, which is when a killed worker comes back.
    """
    config = current_app.config
    celery = current_app.extensions["celery"]
    # First kombu's own sweep (workers run it only every 100 s by default): messages unacknowledged
    # for longer than the visibility timeout, whose worker is gone, go back to their queues.
    with celery.connection_for_write() as connection:
        connection.default_channel.qos.restore_visible(num=None, interval=1)
    seconds = older_than if older_than is not None else config["JOB_REQUEUE_AFTER_SECONDS"]
    now = utcnow()
    broker = redis.Redis.from_url(config["BROKER_URL"], socket_timeout=5)
    with session_scope() as session:
        candidates = list(
            session.scalars(
                select(Job)
                .where(
                    or_(
                        and_(Job.state == "queued", Job.updated_at < now - timedelta(seconds=seconds)),
                        # A worker takes the run lock before the job turns running and lets it go
                        # after the job is final: running without the lock means its worker is gone.
                        Job.state == "running",
                    )
                )
                .order_by(Job.updated_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        queued = [job for job in candidates if job.state == "queued"]
        waiting = _waiting_in_queues(broker) if queued else b""
        lost = [job for job in queued if str(job.id).encode() not in waiting]
        lost += jobs.orphaned(session, [job for job in candidates if job.state == "running"])
        for job in lost:
            job.updated_at = utcnow()  # the next sweep waits its full period again
        session.commit()
        for job in lost:
            log.warning(
                "job=%s org=%s kind=%s %s; sending it again",
                job.id,
                job.org_id,
                job.kind,
                "lost its worker" if job.state == "running" else "lost its message",
            )
            jobs.enqueue(session, get_redis(), celery, job)
    broker.close()
    return {"requeued": [str(job.id) for job in lost]}


@shared_task(name="cache.warm", acks_late=True)
def warm_cache(org_ids: list[int] | None = None) -> dict[str, Any]:
    """Submit a cache_refresh job for each organization that has popular queries (deduplicated)."""
    client = get_redis()
    celery = current_app.extensions["celery"]
    submitted: list[str] = []
    with session_scope() as session:
        query = select(Organization.id).order_by(Organization.id)
        if org_ids is not None:
            query = query.where(Organization.id.in_(org_ids))
        ids = list(session.scalars(query))
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            pipe = client.pipeline(transaction=False)
            for org_id in chunk:
                pipe.zcard(popular.popular_key(org_id))
            for org_id, count in zip(chunk, pipe.execute(), strict=True):
                if not count:
                    continue
                job, created = jobs.submit(
                    session, client, celery, org_id=org_id, user_id=None, kind="cache_refresh", params={}
                )
                if created:
                    submitted.append(str(job.id))
                    log.info("job=%s org=%s kind=cache_refresh submitted by warm-up", job.id, org_id)
    return {"organizations": len(ids), "submitted": submitted}
