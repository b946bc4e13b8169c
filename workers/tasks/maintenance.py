"""Beat's housekeeping: export file retention, job retention, expired token revocations, jobs whose
message was lost, warming the cache."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from celery import shared_task
from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from webapp.analytics import popular
from webapp.core.timeutil import utcnow
from webapp.exports import files as export_files
from webapp.infra import broker_queues
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.jobs import recovery, retention
from webapp.jobs import submission as jobs
from webapp.models import IdempotencyKey, Organization
from webapp.models.jobs import Export
from webapp.security import families, revocation

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


def _expire_rows(session: Session, cutoff: datetime, root: Path, moment: datetime) -> tuple[int, int]:
    """Mark exports created before `cutoff` deleted and delete their files: (rows, files)."""
    expired = files = 0
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
            return expired, files


def _remove_strays(session: Session, cutoff: datetime, root: Path) -> int:
    """Delete files under `root` older than `cutoff` that no live export row knows of."""
    live = session.scalars(select(Export.path).where(Export.deleted_at.is_(None)))
    known = {str(Path(path).resolve()) for path in live}
    strays = 0
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and str(path) not in known and path.stat().st_mtime < cutoff.timestamp():
                strays += _remove(path, root)
    return strays


@shared_task(name="maintenance.cleanup_exports", acks_late=True)
def cleanup_exports(now: str | None = None) -> dict[str, Any]:
    """Delete export files older than EXPORT_RETENTION_DAYS and mark their rows deleted.

    Rows stay (with deleted_at) so a late download says the file is gone rather than unknown.
    Files no row knows of (temp files of killed workers) are deleted once as old as the retention.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    cutoff = moment - timedelta(days=current_app.config["EXPORT_RETENTION_DAYS"])
    root = Path(current_app.config["EXPORT_DIR"]).resolve()
    with session_scope() as session:
        expired, files = _expire_rows(session, cutoff, root, moment)
        strays = _remove_strays(session, cutoff, root)
    # No writer runs longer than a task may: what one left behind longer ago was killed with it (at
    # least SCRATCH_MIN_AGE, for a worker started with a --time-limit of its own).
    scratch_age = max(
        timedelta(seconds=2 * current_app.config["TASK_TIME_LIMIT"]), export_files.SCRATCH_MIN_AGE
    )
    scratch = export_files.remove_scratch(root, moment - scratch_age)
    log.info(
        "export cleanup: %s rows expired, %s files, %s strays and %s scratch deleted",
        expired,
        files,
        strays,
        scratch,
    )
    return {"expired": expired, "files_deleted": files, "strays_deleted": strays, "scratch_deleted": scratch}


@shared_task(name="maintenance.purge_jobs", acks_late=True)
def purge_jobs(now: str | None = None) -> dict[str, Any]:
    """Strip finished imports' rows, and delete finished jobs older than JOB_RETENTION_DAYS."""
    moment = datetime.fromisoformat(now) if now else utcnow()
    with session_scope() as session:
        stripped, deleted = retention.purge(
            session, now=moment, retention_days=current_app.config["JOB_RETENTION_DAYS"]
        )
    log.info("job purge: %s import payloads stripped, %s jobs deleted", stripped, deleted)
    return {"payloads_stripped": stripped, "jobs_deleted": deleted}


@shared_task(name="maintenance.cleanup_revoked_tokens", acks_late=True)
def cleanup_revoked_tokens(now: str | None = None) -> dict[str, Any]:
    """Delete revocations and records of tokens past their expiry (refused as expired anyway)."""
    moment = datetime.fromisoformat(now) if now else utcnow()
    with session_scope() as session:
        deleted = revocation.delete_expired(session, moment)
        issued = families.delete_expired(session, moment)
    log.info("token cleanup: %s expired revocations and %s expired issued tokens deleted", deleted, issued)
    return {"deleted": deleted, "issued_deleted": issued}


@shared_task(name="maintenance.cleanup_idempotency_keys", acks_late=True)
def cleanup_idempotency_keys(now: str | None = None) -> dict[str, Any]:
    """Delete the stored answers of Idempotency-Keys past IDEMPOTENCY_KEY_HOURS."""
    moment = datetime.fromisoformat(now) if now else utcnow()
    with session_scope() as session:
        deleted = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= moment)).rowcount
    log.info("idempotency-key cleanup: %s expired keys deleted", deleted)
    return {"deleted": deleted or 0}


@shared_task(name="maintenance.requeue_lost_jobs", acks_late=True)
def requeue_lost_jobs(older_than: int | None = None) -> dict[str, Any]:
    """Send again the task of every job a lost worker or a lost message would leave unfinished.

    Jobs queued for `older_than` seconds (JOB_REQUEUE_AFTER_SECONDS) are checked against the queues
    (webapp.jobs.recovery). Beat runs this every minute, and every worker asks for it once when it
    starts, which is when a killed worker comes back.
    """
    celery = current_app.extensions["celery"]
    seconds = older_than if older_than is not None else current_app.config["JOB_REQUEUE_AFTER_SECONDS"]
    queues = {route.queue for route in jobs.TASKS.values()}
    broker_queues.restore_unacknowledged(celery)
    with session_scope() as session:
        lost = recovery.requeue_lost(
            session,
            get_redis(),
            celery,
            stale_after=timedelta(seconds=seconds),
            waiting=lambda: broker_queues.waiting_messages(celery, queues),
        )
        return {"requeued": [str(job.id) for job in lost]}


def _with_popular_queries(client: redis.Redis, org_ids: list[int]) -> list[int]:
    """The organizations among `org_ids` that have popular queries to warm."""
    pipe = client.pipeline(transaction=False)
    for org_id in org_ids:
        pipe.zcard(popular.popular_key(org_id))
    return [org_id for org_id, count in zip(org_ids, pipe.execute(), strict=True) if count]


@shared_task(name="cache.warm", acks_late=True)
def warm_cache(org_ids: list[int] | None = None) -> dict[str, Any]:
    """Submit a cache_refresh job for each organization that has popular queries (deduplicated)."""
    client, celery = get_redis(), current_app.extensions["celery"]
    submitted: list[str] = []
    with session_scope() as session:
        query = select(Organization.id).order_by(Organization.id)
        if org_ids is not None:
            query = query.where(Organization.id.in_(org_ids))
        ids = list(session.scalars(query))
        for start in range(0, len(ids), BATCH):
            for org_id in _with_popular_queries(client, ids[start : start + BATCH]):
                job, created = jobs.submit(
                    session, client, celery, org_id=org_id, user_id=None, kind="cache_refresh", params={}
                )
                if created:
                    submitted.append(str(job.id))
                    log.info("job=%s org=%s kind=cache_refresh submitted by warm-up", job.id, org_id)
    return {"organizations": len(ids), "submitted": submitted}
